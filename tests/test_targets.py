"""Prediction targets: conversions between all forms, the posterior-mean target, EDM's
preconditioning principle (seed 000 §2, seed 001 §8.1, seed 003 ch. 4-5)."""

import math

import pytest
import torch

from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.levels import Levels
from difftk.diffusion.vlb import posterior
from difftk.errors import RecipeError
from difftk.plugins.samplers import DDPM, Heun
from difftk.plugins.schedules import EDM, Linear
from difftk.plugins.targets import X0, EDMPrecond, Eps, Mean, Score, V
from difftk.plugins.variance import FixedSmall
from difftk.recipe import validate
from difftk.testing.denoisers import GaussianIdealNet

SCHEDULE = Linear(T=1000)


def _table_levels(n=64, seed=0, fractional=False):
    """Float64 levels of the linear schedule at random t (integer or fractional)."""
    g = torch.Generator().manual_seed(seed)
    if fractional:
        t = 1 + 999 * torch.rand(n, generator=g, dtype=torch.float64)
        alpha = SCHEDULE.levels_at(t).alpha.double()
    else:
        t = torch.randint(1, 1001, (n,), generator=g).double()
        alpha = SCHEDULE.table["alpha_bar"][t.long()].sqrt()
    return Levels(alpha=alpha, sigma=(1 - alpha**2).sqrt(), t=t)


TARGETS = [X0(), Eps(), V(), Score(), Mean()] + [
    EDMPrecond(sigma_data=0.6, predict=p) for p in ("x0", "eps", "v", "score")]


@pytest.mark.parametrize("fractional", [False, True])
@pytest.mark.parametrize("target", TARGETS, ids=lambda t: f"{t.name}-{getattr(t, 'predict', '')}")
def test_every_form_round_trips_in_float64(target, fractional):
    target = target.bind(SCHEDULE)
    levels = _table_levels(fractional=fractional)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 3, generator=g, dtype=torch.float64)
    alpha, sigma = levels.alpha[:, None], levels.sigma[:, None]
    x_t = alpha * x0 + sigma * eps
    pred = target.value(x0, eps, levels)
    post = posterior(SCHEDULE, levels.t)
    expected = {
        "x0": x0, "eps": eps, "v": alpha * eps - sigma * x0, "score": -eps / sigma,
        "mean": post.c_x0[:, None] * x0 + post.c_xt[:, None] * x_t,
    }
    got = {"x0": target.to_x0(pred, x_t, levels), "eps": target.to_eps(pred, x_t, levels),
           "v": target.to_v(pred, x_t, levels), "score": target.to_score(pred, x_t, levels),
           "mean": target.to_mean(pred, x_t, levels)}
    for form, value in expected.items():
        assert torch.allclose(got[form], value, rtol=1e-10, atol=1e-10), form


def test_mean_target_is_the_seeds_posterior_mean_and_eps_form():
    """mu = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t) (seed 004 Theory II.3)."""
    target = Mean().bind(SCHEDULE)
    levels = _table_levels()
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(64, 2, generator=g, dtype=torch.float64), torch.randn(
        64, 2, generator=g, dtype=torch.float64)
    x_t = levels.alpha[:, None] * x0 + levels.sigma[:, None] * eps
    t = levels.t.long()
    beta = SCHEDULE.table["betas"][t - 1][:, None]
    ab = SCHEDULE.table["alpha_bar"][t][:, None]
    mu = (x_t - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()
    assert torch.allclose(target.value(x0, eps, levels), mu, rtol=1e-9, atol=1e-12)
    # Seed 003 eq. 5.3: the error factor is C_0^2 = alpha_bar_{t-1} beta_t^2 / (1 - alpha_bar_t)^2.
    ab_prev = SCHEDULE.table["alpha_bar"][t - 1]
    c0_sq = ab_prev * SCHEDULE.table["betas"][t - 1] ** 2 / (1 - SCHEDULE.table["alpha_bar"][t]) ** 2
    assert torch.allclose(target.x0_error_factor(levels), c0_sq, rtol=1e-9)


def test_mean_target_refuses_a_schedule_without_a_table(registry):
    recipe = {"data": {"name": "digits"}, "model": {"name": "unet"}, "schedule": {"name": "edm"},
              "target": {"name": "mean"}, "noise_sampling": {"name": "log_normal"},
              "sampler": {"name": "heun"}}
    with pytest.raises(RecipeError, match="target.name: the mean target regresses the posterior"):
        validate(recipe, registry)
    with pytest.raises(ValueError, match="bound to a t-space schedule"):
        Mean().bind(EDM()).coefficients(Levels(torch.ones(1), torch.ones(1)))


class _AsTarget(torch.nn.Module):
    """The ideal Gaussian denoiser re-expressed in a given target's output."""

    def __init__(self, schedule, target, mu, s):
        super().__init__()
        self.ideal, self.schedule, self.target = GaussianIdealNet(schedule, mu, s), schedule, target

    def forward(self, x, time, labels=None):
        x0 = self.ideal(x, time).double()
        levels = self.schedule.levels_at(time.double()).to(dtype=torch.float64)
        levels = Levels(levels.alpha, levels.sigma, time.double())
        eps = (x.double() - levels.alpha[:, None] * x0) / levels.sigma[:, None]
        return self.target.value(x0, eps, levels).float()


@pytest.mark.parametrize("sampler", [DDPM(steps=0), Heun(steps=18)], ids=["ddpm", "heun"])
def test_mean_target_works_with_every_sampler(sampler):
    """The ideal mean-predictor samples exactly what the ideal x0-predictor samples, and the
    ancestral sampler reproduces the data distribution N(mu, s^2)."""
    schedule = Linear(T=100, beta_end=0.2)
    target = Mean().bind(schedule)
    den = Denoiser(_AsTarget(schedule, target, 0.5, 0.3), schedule, Mean(), FixedSmall())
    ref = Denoiser(GaussianIdealNet(schedule, 0.5, 0.3), schedule, X0(), FixedSmall())
    samples = []
    for d in (den, ref):
        g = torch.Generator().manual_seed(0)
        samples.append(sampler.sample(d, torch.randn(2000, 1, generator=g), g).x.double())
    assert torch.allclose(samples[0], samples[1], atol=1e-4)
    if sampler.name == "ddpm":
        assert float(samples[0].mean()) == pytest.approx(0.5, abs=0.03)
        assert float(samples[0].std()) == pytest.approx(0.3, abs=0.03)


SIGMAS = (0.01, 0.1, 1.0, 10.0, 80.0)


@pytest.mark.parametrize("predict", ["x0", "eps", "v", "score"])
def test_edm_residual_is_unit_variance_in_edm_coordinates(predict):
    """Seed 001 §8.1.2: what f must learn, (T - c_skip x) / c_out, has variance 1 +- 2% for
    x0 ~ N(0, sigma_data^2), at each sigma of the EDM schedule (alpha = 1)."""
    d, n = 0.5, 50000
    g = torch.Generator().manual_seed(3)
    target = EDMPrecond(sigma_data=d, predict=predict)
    for s in SIGMAS:
        levels = Levels(alpha=torch.ones(n, dtype=torch.float64),
                        sigma=torch.full((n,), s, dtype=torch.float64))
        x0 = d * torch.randn(n, 1, generator=g, dtype=torch.float64)
        eps = torch.randn(n, 1, generator=g, dtype=torch.float64)
        x = x0 + s * eps
        c_skip, c_out, c_in, _ = target.scalings(levels)
        residual = (target.value(x0, eps, levels) - c_skip[:, None] * x) / c_out[:, None]
        assert float(residual.var()) == pytest.approx(1.0, rel=0.02), s
        assert float((c_in[:, None] * x).var()) == pytest.approx(1.0, rel=0.02), s
        # c_skip x is the best linear estimate: the residual is uncorrelated with x.
        corr = float((residual * x).mean() / (residual.std() * x.std()))
        assert abs(corr) < 0.02, s


def test_the_seeds_v_row_is_the_principle_only_at_unit_sigma_data():
    """Seed 001 §8.1.3 gives c_skip = 0, c_out = 1 for v. On a variance-preserving process
    the principle reproduces it for sigma_data = 1 and departs from it otherwise."""
    levels = Linear().levels_at(torch.tensor([10.0, 300.0, 900.0])).to(dtype=torch.float64)
    c_skip, c_out, _, _ = EDMPrecond(sigma_data=1.0, predict="v").scalings(levels)
    assert torch.allclose(c_skip, torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(c_out, torch.ones(3, dtype=torch.float64), atol=1e-6)
    c_skip, c_out, _, _ = EDMPrecond(sigma_data=0.5, predict="v").scalings(levels)
    alpha, sigma = levels.alpha, levels.sigma
    assert torch.allclose(c_skip, alpha * sigma * 0.75 / (0.25 * alpha**2 + sigma**2), rtol=1e-9)
    assert float(c_skip.abs().min()) > 0.01
    assert math.isfinite(float(c_out.sum()))


@pytest.mark.parametrize("target", ["x0", "eps", "v", "score"])
def test_diagnostics_closed_forms_against_monte_carlo_on_gaussian_data(target):
    """Seed 000 §3: the Monte Carlo estimator (exact posterior over a sample) on Gaussian
    data reproduces the closed forms; and the law of total variance holds."""
    from difftk.analysis.target_diagnostics import (
        gaussian_diagnostics,
        monte_carlo_diagnostics,
        vp_levels,
    )

    s = 0.8
    g = torch.Generator().manual_seed(0)
    data = s * torch.randn(4000, 1, generator=g, dtype=torch.float64)
    for snr in (0.1, 1.0, 10.0):
        a, b = vp_levels(torch.tensor([snr]))
        closed = {k: float(v) for k, v in gaussian_diagnostics(target, a, b, s).items()}
        mc = monte_carlo_diagnostics(data, target, float(a), float(b), 3000, g)
        assert mc["correlation"] == pytest.approx(closed["correlation"], abs=0.05)
        assert mc["signal"] == pytest.approx(closed["signal"], rel=0.05, abs=0.01)
        assert mc["conditional_variance"] == pytest.approx(closed["conditional_variance"],
                                                           rel=0.05)
        c, d = {"x0": (1, 0), "eps": (0, 1), "v": (-float(b), float(a)),
                "score": (0, -1 / float(b))}[target]
        var_y = c**2 * s**2 + d**2
        assert closed["signal"] ** 2 + closed["conditional_variance"] == pytest.approx(var_y)


def test_mutual_information_obeys_i_mmse_and_the_seeds_endpoints():
    """dI(x0; x_t)/dSNR = MMSE / 2 (seed 001 §3.2.1); eps and score carry the same
    information (§3.1.4); v vanishes at both ends and, for unit-variance data, everywhere."""
    from difftk.analysis.information import gaussian_mutual_information
    from difftk.analysis.target_diagnostics import gaussian_diagnostics, vp_levels

    s = 0.5
    snr = torch.logspace(-4, 4, 81, dtype=torch.float64)
    a, b = vp_levels(snr)
    h = 1e-6
    up, dn = vp_levels(snr * (1 + h)), vp_levels(snr * (1 - h))
    dI = (gaussian_mutual_information("x0", *up, s) - gaussian_mutual_information("x0", *dn, s)) \
        / (2 * h * snr)
    mmse = gaussian_diagnostics("x0", a, b, s)["conditional_variance"]
    assert torch.allclose(dI, 0.5 * mmse, rtol=1e-5)
    assert torch.allclose(gaussian_mutual_information("eps", a, b, s),
                          gaussian_mutual_information("score", a, b, s))
    v = gaussian_mutual_information("v", a, b, s)
    assert float(v[0]) < 1e-3 and float(v[-1]) < 1e-3 and float(v.max()) > 0.1
    assert float(gaussian_mutual_information("v", a, b, 1.0).abs().max()) < 1e-12
