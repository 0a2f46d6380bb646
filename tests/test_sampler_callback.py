"""The per-step callback every sampler reports to (k-diffusion's shape): one report per step,
in order, with the state the model saw and the model's x0 estimate of it."""

import pytest
import torch

from difftk.plugins.samplers import DDIM, DDPM, DPMpp2M, Euler, EulerAncestral, Heun
from difftk.plugins.schedules import EDM, Linear
from difftk.testing.denoisers import MU, STD, gaussian_denoiser

SAMPLERS = [Heun(steps=6), Heun(steps=6, S_churn=5.0), Euler(steps=6), EulerAncestral(steps=6),
            DPMpp2M(steps=6), DDIM(steps=6, eta=0.5), DDPM(steps=6)]


def _ideal_x0(x_t, alpha, sigma):
    """E[x0 | x_t] for x0 ~ N(MU, STD^2): the answer the Gaussian denoiser gives."""
    gain = STD**2 * alpha / (alpha**2 * STD**2 + sigma**2)
    return MU + gain * (x_t.double() - alpha * MU)


NAMES = ["heun", "heun-churn", "euler", "euler_ancestral", "dpmpp_2m", "ddim-eta", "ddpm"]
# every sampler on a table schedule; on EDM's (no table) only those that need no table
CASES = [pytest.param(sampler, schedule, id=f"{name}-{schedule.name}")
         for sampler, name in zip(SAMPLERS, NAMES, strict=True) for schedule in (Linear(), EDM())
         if schedule.has_table or sampler.table_need() is None]


@pytest.mark.parametrize("sampler, schedule", CASES)
def test_every_step_reports_the_state_and_its_x0_estimate(sampler, schedule):
    if sampler.grid != "karras" and not schedule.has_table:
        sampler = sampler.model_copy(update={"grid": "karras"})
    denoiser = gaussian_denoiser(schedule)
    noise = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    steps = []
    with_callback = sampler.sample(denoiser, noise, torch.Generator().manual_seed(1),
                                   callback=steps.append)
    without = sampler.sample(denoiser, noise, torch.Generator().manual_seed(1))
    assert torch.equal(with_callback.x, without.x)  # listening changes nothing

    assert [s["i"] for s in steps] == list(range(sampler.noise_levels(schedule).steps))
    sigmas = [s["sigma"] / s["alpha"] for s in steps if s["alpha"] > 0]
    assert all(a > b for a, b in zip(sigmas, sigmas[1:], strict=False)), "noise must fall"
    for s in steps:
        assert set(s) == {"x", "i", "alpha", "sigma", "denoised"}
        assert s["x"].shape == noise.shape and s["denoised"].shape == noise.shape
        # x is x_t = alpha x0 + sigma eps (also for samplers that step in x_t / alpha), and
        # denoised is the model's x0 estimate at exactly that state and level.
        expected = _ideal_x0(s["x"], s["alpha"], s["sigma"])
        assert torch.allclose(s["denoised"].double(), expected, rtol=1e-5, atol=1e-5), s["i"]
    # The last estimate is the sample, up to the final step's arithmetic.
    assert torch.allclose(steps[-1]["denoised"].float(), without.x, atol=0.05)
