"""Training noise-level distributions: samples against stated densities, importance weights."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from difftk.cli import app
from difftk.plugins.noise_sampling import (
    GaussianT,
    LogitNormal,
    LogNormal,
    LogUniformSigma,
    UniformSigma,
    UniformT,
)
from difftk.plugins.schedules import EDM, VP, Cosine, Linear
from difftk.recipe import load_recipe

runner = CliRunner()


def _cdf_from_density(sampler, schedule):
    """The CDF of logSNR by integrating the stated density on a fine grid (trapezoid rule)."""
    x = torch.linspace(-40, 40, 200_001, dtype=torch.float64)
    p = sampler.log_snr_density(x, schedule).numpy()
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(x.numpy()))])
    return lambda v: np.interp(v, x.numpy(), cdf)


def _log_snr(levels):
    return (2 * (torch.log(levels.alpha.double()) - torch.log(levels.sigma.double()))).numpy()


@pytest.mark.parametrize("sampler, schedule", [
    (UniformT(discrete=False), Linear()),
    (UniformT(discrete=False), VP()),
    (GaussianT(discrete=False), Cosine()),
    (GaussianT(discrete=False, mean=0.3, std=0.1), EDM()),
    (UniformSigma(), Linear()),
    (LogUniformSigma(), EDM()),
    (LogNormal(), EDM()),
    (LogitNormal(), Cosine()),
], ids=lambda v: v.name)
def test_samples_match_the_stated_density(sampler, schedule):
    g = torch.Generator().manual_seed(0)
    x = _log_snr(sampler.sample(20_000, schedule, g, "cpu"))
    cdf = _cdf_from_density(sampler, schedule)
    result = stats.kstest(x, cdf)
    print(f"{sampler.name} on {schedule.name}: KS {result.statistic:.4f}, p = {result.pvalue:.3f}")
    assert result.pvalue > 0.001
    assert cdf(40.0) == pytest.approx(1.0, abs=1e-4)  # the density integrates to 1


def test_a_wrong_density_is_rejected():
    g = torch.Generator().manual_seed(0)
    x = _log_snr(LogNormal(P_mean=-1.2).sample(20_000, EDM(), g, "cpu"))
    assert stats.kstest(x, _cdf_from_density(LogNormal(P_mean=-1.1), EDM())).pvalue < 1e-6


def test_log_normal_mean_and_std_in_log_sigma():
    g = torch.Generator().manual_seed(0)
    lv = LogNormal(P_mean=-0.4, P_std=1.0).sample(200_000, EDM(), g, "cpu")
    ln = torch.log(lv.sigma_edm.double())
    print(f"ln sigma: mean {float(ln.mean()):.4f}, std {float(ln.std()):.4f}")
    assert float(ln.mean()) == pytest.approx(-0.4, abs=0.01)
    assert float(ln.std()) == pytest.approx(1.0, abs=0.01)


def test_logit_normal_is_logit_normal_in_rectified_flow_time():
    """Esser et al. 2024: t = sigmoid(m + s z); here t = sigma_edm / (1 + sigma_edm)."""
    g = torch.Generator().manual_seed(0)
    sigma = LogitNormal(m=0.5, s=0.8).sample(20_000, EDM(sigma_max=1e9), g, "cpu").sigma_edm.double()
    t = sigma / (1 + sigma)
    logit = torch.log(t / (1 - t)).numpy()
    assert stats.kstest(logit, stats.norm(0.5, 0.8).cdf).pvalue > 0.001


def test_discrete_t_draws_follow_their_masses():
    g = torch.Generator().manual_seed(0)
    T, n = 20, 200_000
    for sampler, masses in ((UniformT(), torch.full((T,), 1 / T, dtype=torch.float64)),
                            (GaussianT(), GaussianT().masses(T))):
        t = sampler.sample(n, Linear(T=T), g, "cpu").t.long()
        assert int(t.min()) >= 1 and int(t.max()) <= T
        counts = torch.bincount(t - 1, minlength=T).double()
        chi2 = float(((counts - n * masses) ** 2 / (n * masses)).sum())
        assert chi2 < stats.chi2(T - 1).ppf(0.999), sampler.name
    assert float(GaussianT().masses(T).sum()) == pytest.approx(1.0, abs=1e-12)


def test_draws_are_reproducible_from_the_generator():
    for sampler in (UniformT(), GaussianT(), UniformSigma(), LogNormal(), LogitNormal()):
        a = sampler.sample(1000, Linear(), torch.Generator().manual_seed(3), "cpu")
        b = sampler.sample(1000, Linear(), torch.Generator().manual_seed(3), "cpu")
        assert torch.equal(a.alpha, b.alpha) and torch.equal(a.sigma, b.sigma)
        assert a.weight is None


def test_importance_weights_turn_gaussian_t_into_uniform_t():
    """Seed 001 §5.2: E_q[(p/q) f(t)] = E_p[f(t)], p = uniform t, exactly in the discrete case."""
    g = torch.Generator().manual_seed(0)
    T, n = 10, 400_000
    lv = GaussianT(importance=True, std=0.2).sample(n, Linear(T=T), g, "cpu")
    w = lv.weight.double()
    masses = GaussianT(std=0.2).masses(T)
    assert torch.allclose(w, (1 / T) / masses[lv.t.long() - 1], rtol=1e-6)
    weighted = torch.bincount(lv.t.long() - 1, weights=w, minlength=T) / n
    assert torch.allclose(weighted, torch.full((T,), 1 / T, dtype=torch.float64), atol=2e-3)
    assert float(w.mean()) == pytest.approx(1.0, abs=0.01)


def test_importance_weights_of_sigma_distributions_match_the_closed_form():
    """On edm (sigma = u), p = uniform sigma; against log-uniform q, p/q = sigma ln(r) / (80 - 0.002)."""
    g = torch.Generator().manual_seed(0)
    lv = LogUniformSigma(importance=True).sample(200_000, EDM(), g, "cpu")
    sigma = lv.sigma_edm.double()
    expected = sigma * math.log(80 / 0.002) / (80 - 0.002)
    assert torch.allclose(lv.weight.double(), expected, rtol=1e-4)
    w = lv.weight.double()
    print(f"mean weight {float(w.mean()):.4f}; P_p(sigma < 40) by weights "
          f"{float((w * (sigma < 40)).mean()):.4f} (exact 0.5)")
    assert float(w.mean()) == pytest.approx(1.0, abs=0.03)
    assert float((w * (sigma < 40)).mean()) == pytest.approx(0.5, abs=0.02)
    # The same distribution as p: every weight is 1.
    same = UniformSigma(importance=True).sample(1000, EDM(), g, "cpu").weight
    assert torch.allclose(same, torch.ones(1000), atol=1e-5)


def test_importance_weights_are_normalised_on_a_partial_support():
    """uniform_sigma on [0.1, 10] covers only part of linear's t axis: weights divided by that
    part's mass keep mean 1, and match p/q computed by hand from the table."""
    g = torch.Generator().manual_seed(0)
    s, q = Linear(), UniformSigma(sigma_min=0.1, sigma_max=10.0, importance=True)
    lv = q.sample(200_000, s, g, "cpu")
    assert float(lv.weight.double().mean()) == pytest.approx(1.0, abs=0.01)
    t_lo, t_hi = (float(s.time_from_log_snr(torch.tensor([-2 * math.log(v)], dtype=torch.float64)))
                  for v in (0.1, 10.0))
    mass = (t_hi - t_lo) / (s.num_steps - 1)
    assert q.reference_mass(s) == pytest.approx(mass, rel=1e-9)


def test_validate_refuses_importance_without_overlap(root):
    out = runner.invoke(app, ["validate", str(root / "recipes/edm.toml"),
                              "--set", "noise_sampling.name=uniform_sigma",
                              "--set", "noise_sampling.sigma_min=200",
                              "--set", "noise_sampling.sigma_max=300",
                              "--set", "noise_sampling.importance=true"])
    assert out.exit_code == 2
    assert "noise_sampling.importance" in out.stderr and "never reaches" in out.stderr


@pytest.mark.parametrize("name", ["uniform_t", "gaussian_t", "uniform_sigma", "log_uniform_sigma",
                                  "log_normal", "logit_normal"])
def test_recipes_validate_with_every_distribution(root, name):
    r = load_recipe(root / "recipes/toy2d.toml", [f"noise_sampling.name={name}",
                                                   "noise_sampling.importance=true"], warn=False)
    assert r.parts["noise_sampling"].name == name and r.parts["noise_sampling"].importance


def test_plot_noise_sampling_writes_png_and_quantiles(tmp_path):
    png, table = tmp_path / "hist.png", tmp_path / "hist.csv"
    out = runner.invoke(app, ["plot", "noise-sampling", "log_normal", "log_normal:P_mean=-0.4",
                              "uniform_t", "-n", "50000", "-o", str(png), "--csv", str(table)])
    assert out.exit_code == 0, out.stderr
    assert png.stat().st_size > 10_000
    rows = [r.split(",") for r in table.read_text().splitlines()]
    assert rows[0] == ["distribution", "statistic", "log_sigma"]
    median = {r[0]: float(r[2]) for r in rows[1:] if r[1] == "q0.5"}
    assert median["log_normal"] == pytest.approx(-1.2, abs=0.03)
    assert median["log_normal:P_mean=-0.4"] == pytest.approx(-0.4, abs=0.03)
    assert median["uniform_t"] == pytest.approx(math.log(40.001), abs=0.03)  # uniform sigma on edm


def test_run_figures_draw_the_runs_schedule_and_distribution(root):
    from difftk.analysis.noise_sampling_figures import run_noise_sampling_figure
    from difftk.analysis.run_figures import RUN_FIGURES
    from difftk.analysis.schedule_figures import run_schedule_figure

    assert run_schedule_figure in RUN_FIGURES and run_noise_sampling_figure in RUN_FIGURES
    r = load_recipe(root / "recipes/toy2d.toml", ["schedule.name=cosine", "target.name=v",
                                                   "noise_sampling.name=gaussian_t"], warn=False)
    for figure in (run_schedule_figure, run_noise_sampling_figure):
        (tag, image), = figure(r)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
