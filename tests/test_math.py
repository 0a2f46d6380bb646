"""The built-in formulas against their closed forms and the seeds' equations."""

import math

import pytest
import torch

from difftk.diffusion.levels import Levels
from difftk.plugins.noise_sampling import LogNormal, UniformT
from difftk.plugins.schedules import EDM, Linear
from difftk.plugins.targets import X0, EDMPrecond, Eps, Score, V
from difftk.plugins.weights import EDMWeight, MinSNR, Uniform


def test_linear_schedule_against_the_product_of_alphas():
    s = Linear()
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    for t in (1, 500, 1000):
        expected = math.prod(1 - b for b in betas[:t])
        assert float(s.alpha_bar(torch.tensor([t]))) == pytest.approx(expected, rel=1e-12)
    # Hand-computed: alpha_bar_1 = 0.9999, alpha_bar_1000 = 4.0358e-5 (DDPM's linear schedule).
    assert float(s.alpha_bar(torch.tensor([1]))) == pytest.approx(0.9999, abs=1e-12)
    assert float(s.alpha_bar(torch.tensor([1000]))) == pytest.approx(4.0358e-5, rel=1e-3)
    lv = s.levels_at(torch.arange(1, 1001))
    assert torch.allclose(lv.alpha.double() ** 2 + lv.sigma.double() ** 2,
                          torch.ones(1000, dtype=torch.float64), atol=1e-6)
    assert torch.all(lv.log_snr[1:] < lv.log_snr[:-1])


def test_linear_posterior_matches_seed_004():
    """coef0, coef1 and rho_t of seed 004 Coding I (forward_process)."""
    s = Linear()
    tab = s.table
    t = 300
    b = tab["betas"][t - 1]
    ab, ab_prev = tab["alpha_bar"][t], tab["alpha_bar"][t - 1]
    assert float(tab["posterior_variance"][t]) == pytest.approx(
        float(b * (1 - ab_prev) / (1 - ab)), rel=1e-12)
    assert float(tab["posterior_c_x0"][t]) == pytest.approx(
        float(ab_prev.sqrt() * b / (1 - ab)), rel=1e-12)
    assert float(tab["posterior_c_xt"][t]) == pytest.approx(
        float((1 - b).sqrt() * (1 - ab_prev) / (1 - ab)), rel=1e-12)


def test_sigma_edm_round_trip_through_t():
    s = Linear()
    t = torch.tensor([1.0, 17.0, 500.0, 999.0])
    lv = s.levels_at(t)
    back = s.levels_from_sigma_edm(lv.sigma_edm.double())
    assert torch.allclose(back.t, t, atol=1e-3)


def _levels(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    log_snr = torch.empty(n, dtype=torch.float64).uniform_(-8, 8, generator=g)
    alpha = torch.sigmoid(log_snr).sqrt()
    return Levels(alpha=alpha, sigma=torch.sigmoid(-log_snr).sqrt())


@pytest.mark.parametrize("target", [X0(), Eps(), V(), Score(), EDMPrecond(sigma_data=0.7)])
def test_targets_round_trip_in_float64(target):
    levels = _levels()
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 3, generator=g, dtype=torch.float64)
    x_t = levels.alpha[:, None] * x0 + levels.sigma[:, None] * eps
    value = target.value(x0, eps, levels)
    assert torch.allclose(target.to_x0(value, x_t, levels), x0, atol=1e-10)
    assert torch.allclose(target.to_eps(value, x_t, levels), eps, atol=1e-10)
    # The error factor: ||T_hat - T||^2 = k ||x0_hat - x0||^2 at fixed x_t.
    x0_hat = x0 + 0.01
    eps_hat = (x_t - levels.alpha[:, None] * x0_hat) / levels.sigma[:, None]
    err_t = (target.value(x0_hat, eps_hat, levels) - value).square().sum(1)
    err_x0 = (x0_hat - x0).square().sum(1)
    assert torch.allclose(err_t, target.x0_error_factor(levels) * err_x0, rtol=1e-8)


def test_eps_and_v_error_factors_are_snr_and_snr_plus_one():
    levels = _levels()
    assert torch.allclose(Eps().x0_error_factor(levels), levels.snr, rtol=1e-10)
    assert torch.allclose(V().x0_error_factor(levels), levels.snr + 1, rtol=1e-10)


@pytest.mark.parametrize("predict, skip, out", [
    ("x0", lambda s, d: d**2 / (d**2 + s**2), lambda s, d: s * d / math.sqrt(d**2 + s**2)),
    ("eps", lambda s, d: s / (d**2 + s**2), lambda s, d: d / math.sqrt(d**2 + s**2)),
    ("score", lambda s, d: -1 / (d**2 + s**2), lambda s, d: d / (s * math.sqrt(d**2 + s**2))),
])
def test_edm_scalings_match_the_seed_table(predict, skip, out):
    """Seed 001 §8.1.3's table for the EDM schedule (alpha = 1)."""
    d = 0.5
    sig = torch.tensor([0.002, 0.1, 1.0, 80.0], dtype=torch.float64)
    levels = Levels(alpha=torch.ones_like(sig), sigma=sig)
    c_skip, c_out, c_in, c_noise = EDMPrecond(sigma_data=d, predict=predict).scalings(levels)
    for i, s in enumerate(sig.tolist()):
        assert float(c_skip[i]) == pytest.approx(skip(s, d), rel=1e-9)
        assert float(c_out[i]) == pytest.approx(out(s, d), rel=1e-9)
        assert float(c_in[i]) == pytest.approx(1 / math.sqrt(d**2 + s**2), rel=1e-9)
        assert float(c_noise[i]) == pytest.approx(math.log(s) / 4, abs=1e-9)


@pytest.mark.parametrize("predict", ["x0", "eps", "v", "score"])
def test_edm_residual_target_has_unit_variance(predict):
    """What f must learn, (T - c_skip x) / c_out, has variance 1 for x0 ~ N(0, sigma_data^2)."""
    d = 0.6
    g = torch.Generator().manual_seed(0)
    for s in (0.01, 1.0, 80.0):
        sig = torch.full((200000,), s, dtype=torch.float64)
        levels = Linear().levels_from_sigma_edm(sig).to(dtype=torch.float64)
        x0 = d * torch.randn(200000, generator=g, dtype=torch.float64)
        eps = torch.randn(200000, generator=g, dtype=torch.float64)
        x_t = levels.alpha * x0 + levels.sigma * eps
        target = EDMPrecond(sigma_data=d, predict=predict)
        c_skip, c_out, _, _ = target.scalings(levels)
        residual = (target.value(x0[:, None], eps[:, None], levels)[:, 0] - c_skip * x_t) / c_out
        assert float(residual.var()) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("snr", [1e-4, 1e-2, 1.0, 1e2, 1e4])
def test_weights_against_their_formulas(snr):
    s = torch.tensor([snr], dtype=torch.float64)
    assert float(Uniform()(s)) == 1.0
    assert float(MinSNR(gamma=5)(s)) == pytest.approx(min(snr, 5.0))
    sigma, d = 1 / math.sqrt(snr), 0.5
    assert float(EDMWeight(sigma_data=d)(s)) == pytest.approx(
        (sigma**2 + d**2) / (sigma * d) ** 2, rel=1e-12)


def test_min_snr_relative_to_eps_and_v_is_the_diffusers_formula():
    levels = _levels()
    snr = levels.snr
    w = MinSNR(gamma=5.0)
    assert torch.allclose(w.on_target(levels, Eps()).double(),
                          torch.clamp(snr, max=5) / snr, rtol=1e-5)
    assert torch.allclose(w.on_target(levels, V()).double(),
                          torch.clamp(snr, max=5) / (snr + 1), rtol=1e-5)


def test_edm_weight_makes_the_preconditioned_loss_unit_weight():
    """lambda(sigma) c_out(sigma)^2 = 1 (seed 001 §8.3)."""
    sig = torch.tensor([0.01, 0.3, 2.0, 50.0], dtype=torch.float64)
    levels = EDM().levels_from_sigma_edm(sig)
    target = EDMPrecond(sigma_data=0.5)
    w = EDMWeight(sigma_data=0.5).on_target(levels, target).double()
    c_out = target.scalings(levels)[1]
    assert torch.allclose(w * c_out**2, torch.ones(4, dtype=torch.float64), rtol=1e-5)


def test_log_normal_matches_p_mean_and_p_std():
    g = torch.Generator().manual_seed(0)
    lv = LogNormal(P_mean=-1.2, P_std=1.2).sample(200000, EDM(sigma_max=1e9, sigma_min=1e-9), g,
                                                  "cpu")
    ln = torch.log(lv.sigma_edm.double())
    assert float(ln.mean()) == pytest.approx(-1.2, abs=0.01)
    assert float(ln.std()) == pytest.approx(1.2, abs=0.01)


def test_uniform_t_covers_1_to_T_evenly():
    g = torch.Generator().manual_seed(0)
    lv = UniformT().sample(100000, Linear(T=10), g, "cpu")
    counts = torch.bincount(lv.t.long(), minlength=11)
    assert counts[0] == 0 and counts[1:].min() > 9500 and counts[1:].max() < 10500
