"""The adaptive solver against closed forms and scipy, the dopri5 sampler, and the ODE
likelihood against the exact log-density of Gaussian data (Song et al. 2021 Appendix D)."""

import math

import pytest
import torch

from difftk.diffusion.ode_solver import dopri5
from difftk.eval.ode_likelihood import ode_log_likelihood, ode_nll_bits_per_dim
from difftk.plugins.adaptive_sampler import Dopri5
from difftk.plugins.schedules import EDM, GVP, RectifiedFlow
from difftk.testing.denoisers import gaussian_denoiser

MU, S = 0.5, 0.3


@pytest.mark.parametrize("rtol", [1e-3, 1e-6])
def test_dopri5_equals_scipys_rk45(rtol):
    """The harmonic oscillator y'' = -y: the same solution and the same number of
    evaluations as scipy.integrate.solve_ivp(method="RK45") at the same tolerances."""
    from scipy.integrate import solve_ivp

    def f(t, y):
        return torch.stack([y[1], -y[0]])

    ours = dopri5(f, torch.tensor([1.0, 0.0], dtype=torch.float64), 0.0, 10.0, rtol=rtol,
                  atol=rtol * 1e-3)
    ref = solve_ivp(lambda t, y: [y[1], -y[0]], (0, 10), [1.0, 0.0], method="RK45", rtol=rtol,
                    atol=rtol * 1e-3)
    assert ours.evaluations == ref.nfev
    assert torch.allclose(ours.y, torch.tensor(ref.y[:, -1]), rtol=1e-10, atol=1e-12)
    exact = torch.tensor([math.cos(10), -math.sin(10)], dtype=torch.float64)
    assert float((ours.y - exact).abs().max()) < 3e3 * rtol


def test_dopri5_integrates_backwards_in_time():
    s = dopri5(lambda t, y: -2 * y, torch.ones(3, dtype=torch.float64), 1.0, 0.0, rtol=1e-8,
               atol=1e-10)
    assert torch.allclose(s.y, torch.full((3,), math.exp(2), dtype=torch.float64), rtol=1e-7)


@pytest.mark.parametrize("schedule", [RectifiedFlow(), RectifiedFlow(shift=3.0), GVP(), EDM()],
                         ids=["rectified_flow", "shift3", "gvp", "edm"])
def test_dopri5_sampler_solves_the_flow_of_gaussian_data(schedule):
    """The exact flow maps noise z to mu + s (sigma_0 z - mu) / sqrt(s^2 + sigma_0^2) in EDM's
    coordinates (mu + s z at sigma_0 = inf); the solver's NFE is an outcome, reported."""
    denoiser = gaussian_denoiser(schedule, MU, S)
    noise = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    result = Dopri5().sample(denoiser, noise, torch.Generator())
    sigma0 = float(Dopri5().noise_levels(schedule).sigma_edm[0])
    exact = MU + S * noise if math.isinf(sigma0) else \
        MU + S * (sigma0 * noise - MU) / math.sqrt(S**2 + sigma0**2)
    assert float((result.x - exact).abs().max()) < 5e-3
    assert 10 < result.nfe < 200


@pytest.mark.parametrize("schedule", [RectifiedFlow(), GVP(), EDM()],
                         ids=["rectified_flow", "gvp", "edm"])
def test_ode_likelihood_is_the_gaussians_log_density(schedule):
    """With the ideal denoiser of N(mu, s^2 I) the ODE's log p at the start level is the
    Gaussian N(alpha mu, alpha^2 s^2 + sigma^2) density there: exactly with the exact
    divergence, on average with Hutchinson's. (On EDM's schedule the prior N(0, 80^2) stands
    in for N(mu, s^2 + 80^2), Song et al.'s approximation: 0.01 nats per dimension here.)"""
    denoiser = gaussian_denoiser(schedule, MU, S)
    x0 = MU + S * torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    lo = schedule.time_range()[0]
    start = 1e-3
    u = lo + start * (schedule.time_range()[1] - lo) if schedule.sigma_edm_range()[0] == 0 else lo
    a, sg = (float(v) for v in schedule.alpha_sigma(torch.tensor([u], dtype=torch.float64)))
    var = a**2 * S**2 + sg**2
    exact = (-0.5 * (x0.double() - a * MU).pow(2) / var - 0.5 * math.log(2 * math.pi * var)).sum(1)
    logp, nfe = ode_log_likelihood(denoiser, x0, generator=torch.Generator().manual_seed(2),
                                   exact_divergence=True)
    tolerance = 2e-3 if schedule.sigma_edm_range()[1] == math.inf else 0.05
    assert torch.allclose(logp, exact, atol=tolerance), float((logp - exact).abs().max())
    assert nfe > 10
    many = MU + S * torch.randn(2000, 2, generator=torch.Generator().manual_seed(3))
    var_exact = (-0.5 * (many.double() - a * MU).pow(2) / var
                 - 0.5 * math.log(2 * math.pi * var)).sum(1)
    hutchinson, _ = ode_log_likelihood(denoiser, many, generator=torch.Generator().manual_seed(4))
    assert float(hutchinson.mean()) == pytest.approx(float(var_exact.mean()), abs=0.03)


def test_bits_per_dim_of_dequantised_images_count_the_bin_width():
    """-log2 of the density plus log2(255 std) per dimension: 8-bit [-1, 1] data (std 0.5)
    add log2(127.5) bits to the continuous nats/dim of the same images."""
    schedule = RectifiedFlow()
    denoiser = gaussian_denoiser(schedule, MU, S)
    x0 = MU + S * torch.randn(32, 1, 2, 2, generator=torch.Generator().manual_seed(5))
    width = 1 / (255 * 0.5)
    kw = dict(batch_size=16, rtol=1e-5, atol=1e-5)
    cont = ode_nll_bits_per_dim(denoiser, x0, bin_width=None,
                                generator=torch.Generator().manual_seed(6), **kw)
    bits = ode_nll_bits_per_dim(denoiser, x0, bin_width=width,
                                generator=torch.Generator().manual_seed(6), **kw)
    expected = (cont["nll_nats_per_dim"] - math.log(width)) / math.log(2)
    assert bits["nll_bpd"] == pytest.approx(expected, abs=0.05)  # dequantisation moves it a bit
    assert bits["nll_nfe"] > 10


def test_eval_nll_takes_the_ode_on_a_flow_run_and_refuses_the_bound(root, tmp_path):
    import json

    from typer.testing import CliRunner

    from difftk.cli import app

    runner = CliRunner()
    args = ["train", str(root / "recipes/edm.toml"), "--no-progress"]
    for item in ["train.steps=4", "train.batch_size=16", "model.channels=8",
                 "model.channel_mult=[1]", "log.val_every=0", "log.sample_every=0",
                 "log.checkpoint_every=4", 'precision.name="fp32"', f'run.out_dir="{tmp_path}"',
                 'schedule.name="rectified_flow"', 'target.name="velocity"',
                 'weight.name="uniform"', 'noise_sampling.name="logit_normal"',
                 'sampler.name="dopri5"']:
        args += ["--set", item]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    run = tmp_path / "edm"
    out = runner.invoke(app, ["eval", str(run), "--nll", "--nll-samples", "4", "-n", "4",
                              "--json", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["nll"]["nll_method"] == "ode" and 0 < report["nll"]["nll_bpd"] < 20
    assert report["nll"]["nll_nfe"] > 10 and report["nfe_per_image"] > 10  # dopri5's own NFE
    out = runner.invoke(app, ["eval", str(run), "--nll", "--nll-method", "bound",
                              "--no-metrics", "--device", "cpu"])
    assert out.exit_code == 1 and "use --nll-method ode" in out.output
