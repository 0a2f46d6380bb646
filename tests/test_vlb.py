"""The variational bound's pieces against closed forms (seed 003 ch. 2-3, §6.2)."""

import math

import pytest
import torch
from torch import nn
from torch.distributions import Normal, kl_divergence

from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.vlb import (
    approx_standard_normal_cdf,
    discretized_gaussian_log_likelihood,
    normal_kl,
    posterior,
    prior_kl_bits,
    vlb_term_bits,
)
from difftk.eval.nll import nll_bits_per_dim
from difftk.plugins.schedules import Linear
from difftk.plugins.targets import X0
from difftk.plugins.variance import FixedLarge, FixedSmall, Learned, LearnedLog, LearnedRange


def test_normal_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(2, 500, generator=g, dtype=torch.float64)
    lv1, lv2 = 3 * torch.randn(2, 500, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(m1, (0.5 * lv1).exp()), Normal(m2, (0.5 * lv2).exp()))
    assert torch.allclose(normal_kl(m1, lv1, m2, lv2), expected, rtol=1e-10, atol=1e-12)


def test_fixed_variance_kl_is_the_weighted_mean_error():
    """Seed 003 eq. 4.6: with sigma_theta^2 = beta_tilde the KL is (mu - mu_theta)^2 / (2 beta_tilde)."""
    mu, mu_theta, var = torch.tensor([0.3]), torch.tensor([-0.1]), torch.tensor([0.01])
    kl = normal_kl(mu, var.log(), mu_theta, var.log())
    assert float(kl) == pytest.approx(0.16 / 0.02, rel=1e-6)


def test_tanh_cdf_is_close_to_the_normal_cdf():
    x = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    exact = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    assert float((approx_standard_normal_cdf(x) - exact).abs().max()) < 2e-4


@pytest.mark.parametrize("mean, std", [(0.0, 0.5), (0.93, 0.01), (-0.99, 0.2), (0.3, 3.0)])
def test_discretized_likelihood_sums_to_one_over_256_bins(mean, std):
    x = torch.linspace(-1, 1, 256, dtype=torch.float64)
    ll = discretized_gaussian_log_likelihood(x, torch.tensor(mean, dtype=torch.float64),
                                             torch.tensor(math.log(std), dtype=torch.float64))
    assert float(ll.exp().sum()) == pytest.approx(1.0, abs=1e-9)
    # An interior bin's mass is the Gaussian's mass over [x - 1/255, x + 1/255].
    k = 128
    dist = Normal(mean, std)
    mass = dist.cdf(x[k] + 1 / 255) - dist.cdf(x[k] - 1 / 255)
    assert float(ll[k].exp()) == pytest.approx(float(mass), abs=5e-4)


def test_posterior_matches_gaussian_conditioning_between_table_steps():
    """q(x_s | x_t, x0) for s = t - 1 at fractional t, from the joint Gaussian of (x_s, x_t)."""
    s = Linear()
    t = torch.tensor([1.5, 2.25, 17.7, 640.3, 999.9], dtype=torch.float64)
    post = posterior(s, t)
    ab_t = s.levels_at(t).alpha.double() ** 2
    ab_s = s.levels_at(t - 1).alpha.double() ** 2
    # x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s) e; x_t = sqrt(ab_t / ab_s) x_s + sqrt(1 - ab_t / ab_s) e'.
    cov = (ab_t / ab_s).sqrt() * (1 - ab_s)
    var_t = 1 - ab_t
    assert torch.allclose(post.c_xt, cov / var_t, rtol=1e-9)
    assert torch.allclose(post.c_x0, ab_s.sqrt() - cov / var_t * ab_t.sqrt(), rtol=1e-6)
    assert torch.allclose(post.variance, (1 - ab_s) - cov**2 / var_t, rtol=1e-6, atol=1e-12)
    # At integer t it is the table (seed 004 Theory II.1), and t = 1 is clipped to t = 2.
    ti = torch.tensor([1.0, 2.0, 500.0])
    pi = posterior(s, ti)
    assert torch.allclose(pi.c_x0, s.table["posterior_c_x0"][[1, 2, 500]], rtol=1e-12)
    assert torch.allclose(pi.variance, s.table["posterior_variance"][[1, 2, 500]], rtol=1e-9)
    assert float(pi.log_variance_clipped[0]) == pytest.approx(
        math.log(float(s.table["posterior_variance"][2])), rel=1e-12)


def test_learned_range_stays_between_beta_tilde_and_beta():
    beta = torch.tensor([0.02, 1e-3, 1e-4]).view(3, 1)
    beta_tilde = beta * torch.tensor([0.99, 0.5, 0.01]).view(3, 1)
    out = torch.linspace(-50, 50, 101).expand(3, 101)
    var = LearnedRange().log_variance(beta, beta_tilde, out).exp()
    assert torch.all(var >= beta_tilde * (1 - 1e-5)) and torch.all(var <= beta * (1 + 1e-5))
    raw = LearnedRange(squash=False)
    inside = torch.linspace(-1, 1, 21).expand(3, 21)
    var = raw.log_variance(beta, beta_tilde, inside).exp()
    assert torch.all(var >= beta_tilde * (1 - 1e-5)) and torch.all(var <= beta * (1 + 1e-5))
    # v = 0 is beta_tilde, v = 1 is beta, v = 1/2 their geometric mean (eq. 6.3-6.4).
    ends = raw.log_variance(beta, beta_tilde, torch.tensor([-1.0, 1.0, 0.0]).expand(3, 3)).exp()
    assert torch.allclose(ends[:, 0:1], beta_tilde) and torch.allclose(ends[:, 1:2], beta)
    assert torch.allclose(ends[:, 2:3], (beta * beta_tilde).sqrt())


def test_direct_variances_read_the_extra_channels():
    out = torch.tensor([[0.5, -0.25]])
    assert torch.allclose(Learned(start="zero").log_variance(None, None, out),
                          torch.log(out.abs()))
    beta = torch.tensor([[0.02]])
    assert torch.allclose(Learned().log_variance(beta, None, out), torch.log((out + beta).abs()))
    assert torch.equal(LearnedLog().log_variance(None, None, out), out)
    b, bt = torch.tensor(0.02), torch.tensor(0.01)
    assert float(FixedSmall().log_variance(b, bt, None)) == pytest.approx(math.log(0.01))
    assert float(FixedLarge().log_variance(b, bt, None)) == pytest.approx(math.log(0.02))
    with pytest.raises(ValueError, match="variance channels"):
        LearnedLog().log_variance(b, bt, None)


def test_expected_kl_of_the_ideal_gaussian_denoiser():
    """For x0 ~ N(0, s^2) and the exact E[x0 | x_t], E[L_t] = c_x0^2 Var(x0 | x_t) / (2 beta_tilde)."""
    sch, s, n = Linear(), 0.5, 50000
    g = torch.Generator().manual_seed(0)
    for t in (2, 50, 400):
        tt = torch.full((n,), t)
        lv = sch.levels_at(tt)
        a, sg = float(lv.alpha[0]), float(lv.sigma[0])
        x0 = s * torch.randn(n, 1, generator=g, dtype=torch.float64)
        x_t = a * x0 + sg * torch.randn(n, 1, generator=g, dtype=torch.float64)
        x0_hat = s**2 * a / (a**2 * s**2 + sg**2) * x_t
        bits = vlb_term_bits(sch, FixedSmall(), x0, x_t, tt, x0_hat, None).bits
        post = posterior(sch, torch.tensor([float(t)]))
        cond_var = s**2 * sg**2 / (a**2 * s**2 + sg**2)
        expected = float(post.c_x0**2 * cond_var / (2 * post.variance)) / math.log(2)
        assert float(bits.mean()) == pytest.approx(expected, rel=0.03), t


class _Constant(nn.Module):
    """A network that always answers the same x0: the exact denoiser of a one-point data set."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x, time, labels=None):
        return torch.full_like(x, self.value)


def test_nll_of_a_one_point_data_set_is_its_prior_term():
    """Data = one 8-bit level c, denoiser = c: every KL vanishes, so the bound is
    L_T = KL(N(sqrt(ab_T) c, 1 - ab_T) || N(0, 1)) plus the decoder's -log2 of the mass of
    N(c, beta_tilde_2) on c's bin [c - 1/255, c + 1/255]."""
    sch = Linear(T=20, beta_start=1e-4, beta_end=0.05)
    c = 2 * 200 / 255 - 1
    den = Denoiser(_Constant(c), sch, X0(), FixedSmall())
    x0 = torch.full((8, 1, 4, 4), c)
    out = nll_bits_per_dim(den, x0, batch_size=5, generator=torch.Generator().manual_seed(0))
    ab = float(sch.table["alpha_bar"][-1])
    lt = 0.5 * (-1 - math.log(1 - ab) + (1 - ab) + ab * c**2) / math.log(2)
    assert out["prior_bpd"] == pytest.approx(lt, rel=1e-5)
    assert float(prior_kl_bits(sch, x0)[0]) == pytest.approx(lt, rel=1e-5)
    z = torch.tensor(1 / 255 / math.sqrt(float(sch.table["posterior_variance"][2])))
    l0 = -math.log2(float(approx_standard_normal_cdf(z) - approx_standard_normal_cdf(-z)))
    assert out["decoder_bpd"] == pytest.approx(l0, rel=1e-4)
    assert out["nll_bpd"] == pytest.approx(lt + l0, rel=1e-4)
    assert out["mean_mse"] == pytest.approx(0.0, abs=1e-12)


def test_learned_variance_starts_at_beta_so_a_zero_output_trains(registry, root, tmp_path):
    """Seed 003 run 1 (sigma^2 output directly): a zero-initialised head means sigma^2 = beta_t,
    not 0 (whose first loss is 1e23); start = "zero" keeps the bare |out|."""
    import torch

    from difftk.recipe import load_recipe
    from difftk.run.runtime import make_runtime
    from difftk.train.trainer import Trainer

    beta = torch.tensor([[1e-4], [0.02]])
    zero = torch.zeros(2, 1)
    learned = registry.get("variance", "learned").cls
    assert torch.allclose(learned().log_variance(beta, beta, zero), beta.log())
    assert torch.all(learned(start="zero").log_variance(beta, beta, zero) < -46)
    r = load_recipe(root / "recipes/foundations/01_direct_direct_vlb.toml", [
        f'run.out_dir="{tmp_path}"', "train.steps=5", "train.batch_size=16", "log.val_every=0",
        "log.sample_every=0", "log.checkpoint_every=0", "log.num_samples=2", "sampler.steps=2",
        "log.every=1"], warn=False)
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    trainer.fit()
    assert trainer.step == 5 and trainer.guard.skipped == 0
