"""Samplers against a denoiser that is exact for Gaussian data N(mu, s^2 I)."""

import math

import pytest
import torch
from helpers import gaussian_denoiser

from difftk.diffusion.grids import karras_sigmas
from difftk.plugins.samplers import DDPM, Euler, Heun
from difftk.plugins.schedules import EDM, Linear

MU, S = 0.5, 0.3


def _draw(sampler, schedule, n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 4, generator=g)
    return sampler.sample(gaussian_denoiser(schedule, MU, S), noise, g)


def _assert_matches_gaussian(x):
    n = x.numel()
    assert float(x.mean()) == pytest.approx(MU, abs=4 * S / math.sqrt(n))
    assert float(x.std()) == pytest.approx(S, rel=0.03)


def test_karras_grid_is_eq_5():
    sig = karras_sigmas(18, 0.002, 80.0, 7.0)
    assert sig.shape == (19,) and sig[-1] == 0
    assert float(sig[0]) == pytest.approx(80.0, rel=1e-12)
    assert float(sig[17]) == pytest.approx(0.002, rel=1e-12)
    i = 5
    expected = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert float(sig[i]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("schedule", [EDM(), Linear()], ids=["edm", "linear"])
def test_heun_recovers_the_gaussian(schedule):
    result = _draw(Heun(steps=32), schedule)
    _assert_matches_gaussian(result.x)
    assert result.nfe == 2 * 32 - 1


def test_heun_with_churn_recovers_the_gaussian():
    # Stochastic sampling converges more slowly than the ODE: 200 steps, gamma = 0.1.
    _assert_matches_gaussian(_draw(Heun(steps=200, S_churn=20), EDM()).x)


def test_deterministic_sampler_maps_fixed_noise_to_fixed_sample():
    a, b = _draw(Heun(steps=10), EDM(), n=16), _draw(Heun(steps=10), EDM(), n=16)
    assert torch.equal(a.x, b.x)


def test_heun_is_second_order_and_euler_first():
    """Doubling the steps divides Euler's error by ~2 and Heun's by ~4 (churn off)."""
    schedule = EDM()
    exact = _draw(Heun(steps=512), schedule, n=256).x

    def err(cls, steps):
        return float((_draw(cls(steps=steps), schedule, n=256).x - exact).abs().max())

    euler = math.log2(err(Euler, 32) / err(Euler, 64))
    heun = math.log2(err(Heun, 32) / err(Heun, 64))
    assert 0.7 < euler < 1.4
    assert 1.6 < heun < 2.6


def test_ddpm_ancestral_recovers_the_gaussian():
    result = _draw(DDPM(), Linear())
    _assert_matches_gaussian(result.x)
    assert result.nfe == 1000


def test_ddpm_respaced_keeps_the_mean_and_loses_some_spread():
    """On 100 of 1000 steps the fixed posterior variance omits Var(x0 | x_t) c_x0^2, so the
    spread shrinks a little (the reason Nichol & Dhariwal learn the variance)."""
    result = _draw(DDPM(steps=100), Linear())
    assert result.nfe == 100
    assert float(result.x.mean()) == pytest.approx(MU, abs=0.01)
    assert 0.85 * S < float(result.x.std()) < S
