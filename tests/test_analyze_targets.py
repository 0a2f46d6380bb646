"""Seed 000 §3 diagnostics: the signed conditional-mean slope, the t axis, the summary table of
§3.4, and the network-based measurement against the closed forms with a Bayes denoiser."""

from pathlib import Path

import numpy as np
import pytest
import torch

from difftk.analysis.run_target_diagnostics import run_target_rows
from difftk.analysis.target_diagnostics import (
    TARGET_COEFFICIENTS,
    gaussian_diagnostics,
    monte_carlo_diagnostics,
    target_diagnostics_table,
    vp_levels,
)
from difftk.analysis.target_summary import summary_rows
from difftk.analysis.trained_run import TrainedRun
from difftk.plugins.schedules import Linear


def test_slope_is_the_seeds_signed_conditional_mean_for_unit_gaussian_data():
    # seed 000 §3.2.1: E[x0 | x_t] = a x_t, E[eps | x_t] = b x_t, E[v | x_t] = 0, E[s | x_t] = -x_t
    a, b = vp_levels(torch.tensor([0.1, 1.0, 10.0], dtype=torch.float64))
    expected = {"x0": a, "eps": b, "v": torch.zeros_like(a), "score": -torch.ones_like(a)}
    for target, slope in expected.items():
        got = gaussian_diagnostics(target, a, b, 1.0)["slope"]
        assert torch.allclose(got, slope, atol=1e-12), target


@pytest.mark.parametrize("target", list(TARGET_COEFFICIENTS))
def test_monte_carlo_slope_matches_the_closed_form(target):
    s, g = 0.7, torch.Generator().manual_seed(1)
    data = s * torch.randn(3000, 1, generator=g, dtype=torch.float64)
    for snr in (0.1, 1.0, 10.0):
        a, b = vp_levels(torch.tensor([snr]))
        closed = float(gaussian_diagnostics(target, a, b, s)["slope"])
        mc = monte_carlo_diagnostics(data, target, float(a), float(b), 3000, g)["slope"]
        assert mc == pytest.approx(closed, rel=0.08, abs=0.02)


def test_rows_carry_the_schedules_time_and_the_summary_reads_the_seeds_table():
    snrs = torch.logspace(-3, 3, 13, dtype=torch.float64)
    rows = target_diagnostics_table(snrs, None, schedule=Linear())
    t = [r["t"] for r in rows if r["target"] == "x0"]
    assert np.all(np.diff(t) < 0) and 1 <= min(t) and max(t) <= 1000  # more SNR, earlier t
    verdicts = {r["target"]: r["favours"] for r in summary_rows(rows)}
    # seed 000 §3.4: eps and score biased to low SNR, x0 to high SNR, v balanced but weaker
    assert verdicts == {"x0": "high SNR", "eps": "low SNR", "v": "balanced, weak",
                        "score": "low SNR"}


class GaussianBayesDenoiser:
    def __init__(self, s, schedule):
        self.s, self.schedule = s, schedule

    def x0_and_extra(self, x_t, levels, labels=None):  # the Denoiser's x0 form
        a, b = levels.alpha.double()[:, None], levels.sigma.double()[:, None]
        return (self.s**2 * a / (a**2 * self.s**2 + b**2) * x_t.double()).float(), None


def test_network_measurement_with_the_bayes_denoiser_reproduces_the_closed_forms():
    s = 0.6
    data = s * torch.randn(3000, 4, generator=torch.Generator().manual_seed(7))
    run = TrainedRun(GaussianBayesDenoiser(s, Linear()), None, data, None, 0, Path("."),
                     torch.device("cpu"))
    rows = run_target_rows(run, points=5, batch_size=3000)
    net = {(r["target"], r["snr"]): r for r in rows if r["source"] == "network"}
    ref = {(r["target"], r["snr"]): r for r in rows if r["source"] == "gaussian"}
    assert net.keys() == ref.keys() and len(net) == 4 * 5
    for key, r in net.items():
        g = ref[key]
        assert r["correlation"] == pytest.approx(g["correlation"], abs=0.04), key
        assert r["slope"] == pytest.approx(g["slope"], rel=0.08, abs=0.03), key
        assert r["signal"] == pytest.approx(g["signal"], rel=0.06, abs=1e-3), key
        assert r["conditional_variance"] == pytest.approx(g["conditional_variance"], rel=0.08), key
