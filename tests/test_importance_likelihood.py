"""The importance-sampled likelihood over forward trajectories (seed 003 eq. 1.29-1.30) and its
K-sample bound (Burda et al. 2016): each log-weight against its definition written out with
torch.distributions, its mean and spread against closed forms, the bound tightening with
K. `difftk eval --nll --nll-method importance` is tested on a trained run in
test_learning_curves.py."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal

from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.vlb import discretized_gaussian_log_likelihood, posterior
from difftk.eval.importance_likelihood import (
    bound_of_first,
    importance_nll_bits_per_dim,
    trajectory_log_weights,
)
from difftk.eval.nll import nll_bits_per_dim
from difftk.plugins.schedules import Linear
from difftk.plugins.targets import X0
from difftk.plugins.variance import FixedLarge, FixedSmall


class _Shrink(nn.Module):
    """x0_hat = 0.7 x_t: a wrong but smooth denoiser, so the model's steps differ from q's."""

    def forward(self, x, time, labels=None):
        return 0.7 * x


def _levels_image(n, value=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 256, (n, 1, 2, 2), generator=g).float()
    return 2 * levels / 255 - 1 if value is None else torch.full((n, 1, 2, 2), value)


def test_a_log_weight_is_the_trajectorys_density_ratio_written_out():
    """T = 3: replay the generator's draws and compute log p(x_{0:3}) - log q(x_{1:3} | x0)
    with torch.distributions.Normal, step by step."""
    sch = Linear(T=3, beta_start=0.1, beta_end=0.4)
    den = Denoiser(_Shrink(), sch, X0(), FixedLarge())
    x0 = _levels_image(5)
    got = trajectory_log_weights(den, x0, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    xs, log_q = [x0.double()], torch.zeros(5, dtype=torch.float64)
    for t in (1, 2, 3):
        beta = float(posterior(sch, torch.tensor([t])).beta[0])
        mean = math.sqrt(1 - beta) * xs[-1]
        x_t = mean + math.sqrt(beta) * torch.randn(x0.shape, generator=g).double()
        log_q += Normal(mean, math.sqrt(beta)).log_prob(x_t).flatten(1).sum(1)
        xs.append(x_t)
    log_p = Normal(0.0, 1.0).log_prob(xs[3]).flatten(1).sum(1)
    for t in (3, 2, 1):
        post = posterior(sch, torch.tensor([t]))
        var = float(post.beta[0])  # fixed_large: sigma^2 = beta_t
        x0_hat = (0.7 * xs[t].float()).clamp(-1, 1).double()
        mean = float(post.c_x0[0]) * x0_hat + float(post.c_xt[0]) * xs[t]
        if t > 1:
            log_p += Normal(mean, math.sqrt(var)).log_prob(xs[t - 1]).flatten(1).sum(1)
        else:
            log_p += discretized_gaussian_log_likelihood(
                x0, mean.float(), torch.full_like(x0, 0.5 * math.log(var))).double().flatten(1).sum(1)
    assert torch.allclose(got, log_p - log_q, rtol=1e-4, atol=1e-3)


def test_one_point_data_and_its_exact_denoiser_give_the_prior_and_decoder_terms_alone():
    """With x0_hat = x0 and the posterior variance, p(x_{t-1} | x_t) = q(x_{t-1} | x_t, x0),
    so log w = log N(x_T; 0, I) - log q(x_T | x0) + log P(x0 | x1), the decoder's term being
    constant (its mean is c whatever x1): its mean is the closed bound of eval/nll.py (here
    L_T + L_0, test_vlb), and with x_T = m + sqrt(v) z, m = sqrt(ab_T) c, v = 1 - ab_T, it is
    -m sqrt(v) z + (1 - v) z^2 / 2 per dimension: variance D (m^2 v + (1 - v)^2 / 2)."""
    c = 2 * 200 / 255 - 1

    class Constant(nn.Module):
        def forward(self, x, time, labels=None):
            return torch.full_like(x, c)

    sch = Linear(T=20, beta_start=1e-4, beta_end=0.05)
    den = Denoiser(Constant(), sch, X0(), FixedSmall())
    x0 = _levels_image(64, value=c)
    g = torch.Generator().manual_seed(0)
    closed = nll_bits_per_dim(den, x0, batch_size=64, generator=g)["nll_bpd"]
    report = importance_nll_bits_per_dim(den, x0[:16], samples=64, batch_size=1024, generator=g)
    assert report["elbo_bpd"] == pytest.approx(closed, rel=0.02)
    ab = float(sch.table["alpha_bar"][-1])
    m, v = math.sqrt(ab) * c, 1 - ab
    assert report["log_weight_std_nats"] == pytest.approx(math.sqrt(4 * (m * m * v + (1 - v) ** 2 / 2)),
                                                          rel=0.08)


def test_the_k_sample_bound_tightens_from_the_elbo_and_the_weights_spread():
    """A wrong denoiser on 8-bit images: L_1 agrees with the closed-form bound within its Monte
    Carlo error, L_K falls as K grows (Burda et al. 2016, Theorem 1), and the weights spread so
    far that a few trajectories carry the mean (effective sample size well below K)."""
    sch = Linear(T=50, beta_start=1e-3, beta_end=0.2)
    den = Denoiser(_Shrink(), sch, X0(), FixedLarge())
    x0 = _levels_image(48, seed=1)
    g = torch.Generator().manual_seed(0)
    # the closed form draws one x_t per step: 20 repeats of the images bring its noise to ~0.3%
    closed = nll_bits_per_dim(den, x0.repeat(20, 1, 1, 1), batch_size=960, generator=g)["nll_bpd"]
    report = importance_nll_bits_per_dim(den, x0, samples=32, batch_size=512, generator=g)
    se = report["elbo_estimate_std_bpd"] / math.sqrt(48 * 32)
    assert abs(report["elbo_bpd"] - closed) < 5 * se + 0.01 * abs(closed)
    bounds = [report[f"bound_k{k}_bpd"] for k in (1, 2, 4, 8, 16, 32)]
    assert all(a > b for a, b in zip(bounds, bounds[1:], strict=False)), bounds
    # L_1 reads the first trajectory of each image: the ELBO again, from 48 draws
    assert abs(bounds[0] - report["elbo_bpd"]) < 5 * report["elbo_estimate_std_bpd"] / math.sqrt(48)
    assert report["log_weight_std_nats"] > 1.0 and report["effective_sample_size"] < 16


def test_bound_of_first_is_log_mean_exp():
    log_w = torch.tensor([[0.0, math.log(3.0), 5.0]], dtype=torch.float64)
    assert float(bound_of_first(log_w, 2)) == pytest.approx(math.log(2.0))

