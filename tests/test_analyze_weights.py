"""Seed 003's weighting and variance figures: `plot weights` for every (weighting, target)
pair with a t column, `plot variance-ratio` (Figure 6.4) and `plot forward-noising`
(Figure 1.2)."""

import csv
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difftk.cli import app
from difftk.registry import default_registry

runner = CliRunner()
TARGETS = default_registry().names("targets")


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("target", TARGETS)
def test_plot_weights_draws_every_weighting_for_each_target(target, tmp_path):
    """Every installed weighting with this target on a t-space schedule (which every
    weighting and target accepts): exit 0, a finite non-negative x0 weight at every level."""
    png, table = tmp_path / "w.png", tmp_path / "w.csv"
    res = runner.invoke(app, ["plot", "weights", "--target", target, "-o", str(png), "--csv",
                              str(table)])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    rows = read_csv(table)
    assert {r["name"] for r in rows} == set(default_registry().names("weights"))
    for r in rows:
        x0_weight = float(r[f"x0_weight_{target}"])
        assert math.isfinite(x0_weight) and x0_weight >= 0, r
        assert 0 <= float(r["t"]) <= 1000  # logSNR above the table's first step: t < 1


def test_mean_target_weight_is_the_squared_posterior_coefficient(tmp_path):
    """`plot weights elbo --target mean` used to crash: the mean target needs the schedule's
    table. Uniform on the mean's MSE weights the x0-MSE by C_0^2 (seed 003 eq. 5.3), and the
    ELBO's x0 weight at t is C_0^2 / (2 beta_tilde_t) (Figure 5.5's XStart factor)."""
    from difftk.plugins.schedules import Linear

    table = tmp_path / "w.csv"
    res = runner.invoke(app, ["plot", "weights", "elbo", "uniform", "--target", "mean",
                              "-o", str(tmp_path / "w.png"), "--csv", str(table)])
    assert res.exit_code == 0, res.output
    tab = Linear().table
    rows = read_csv(table)
    elbo = [r for r in rows if r["name"] == "elbo"]
    assert len(elbo) == 1000
    for r in elbo[1::97]:
        t = round(float(r["t"]))
        c0 = float(tab["posterior_c_x0"][t])
        # the elbo weight is stated on the x0-MSE, so its x0 weight is w itself
        assert float(r["x0_weight_mean"]) == pytest.approx(float(r["w"]))
        if t > 1:
            assert float(r["w"]) == pytest.approx(
                c0**2 / (2 * float(tab["posterior_variance"][t])), rel=1e-4)
    uniform = [r for r in rows if r["name"] == "uniform"]
    for r in uniform[::40]:
        t = float(r["t"])
        from difftk.diffusion.vlb import posterior

        c0 = float(posterior(Linear(), torch.tensor([t], dtype=torch.float64)).c_x0[0])
        assert float(r["x0_weight_mean"]) == pytest.approx(c0**2, rel=1e-3)


def test_plot_weights_mean_target_without_a_table_is_one_sentence(tmp_path):
    res = runner.invoke(app, ["plot", "weights", "min_snr", "--schedule", "edm", "--target",
                              "mean", "-o", str(tmp_path / "w.png")])
    assert res.exit_code == 1 and "--target mean" in res.output and "t-space" in res.output
    assert "Traceback" not in res.output


def test_variance_ratio_is_the_ratio_of_the_two_bounds(tmp_path):
    table = tmp_path / "r.csv"
    res = runner.invoke(app, ["plot", "variance-ratio", "linear", "cosine", "-o",
                              str(tmp_path / "r.png"), "--csv", str(table)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.png").stat().st_size > 5000
    rows = read_csv(table)
    from difftk.plugins.schedules import Linear

    ab = Linear().table["alpha_bar"].numpy()
    linear = [r for r in rows if r["schedule"] == "linear"]
    assert [int(r["t"]) for r in linear] == list(range(2, 1001))
    ratio = np.array([float(r["ratio"]) for r in linear])
    t = np.arange(2, 1001)
    # beta_t / beta_tilde_t = (1 - alpha_bar_t) / (1 - alpha_bar_{t-1})
    assert np.allclose(ratio, (1 - ab[t]) / (1 - ab[t - 1]), rtol=1e-9)
    assert ratio[0] > 2 and abs(ratio[-1] - 1) < 1e-3 and np.all(np.diff(ratio) < 0)
    res = runner.invoke(app, ["plot", "variance-ratio", "edm", "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and "t-space" in res.output and "Traceback" not in res.output


def test_forward_noising_pairs_follow_the_schedule(root, tmp_path):
    table = tmp_path / "f.csv"
    res = runner.invoke(app, ["plot", "forward-noising", str(root / "recipes/ddpm.toml"),
                              "--times", "1,250,1000", "-n", "3", "-o", str(tmp_path / "f.png"),
                              "--csv", str(table)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "f.png").stat().st_size > 5000
    rows = read_csv(table)
    assert [float(r["t"]) for r in rows] == [1, 250, 1000]
    assert [float(r["previous_t"]) for r in rows] == [0, 249, 999]
    corr = [float(r["correlation_with_x0"]) for r in rows]
    assert corr[0] > 0.99 and corr[0] > corr[1] > corr[2]
    res = runner.invoke(app, ["plot", "forward-noising", str(root / "recipes/ddpm.toml"),
                              "--times", "5000", "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and "1..1000" in res.output


def test_forward_transition_has_the_marginal_of_q_xt_given_x0():
    """(x_s, x_t) drawn as q(x_s | x0) then q(x_t | x_s): x_t has mean alpha_t x0 and
    variance sigma_t^2, and x_s, x_t are correlated as the chain says."""
    from difftk.analysis.forward_noising_figures import forward_pairs
    from difftk.plugins.schedules import Cosine

    schedule = Cosine()
    x0 = torch.full((20000, 1), 0.7)
    pairs = forward_pairs(x0, schedule, [300.0], torch.Generator().manual_seed(0))
    a, s = schedule.alpha_sigma(torch.tensor([300.0], dtype=torch.float64))
    xt = pairs.x_t[0].double()
    assert float(xt.mean()) == pytest.approx(float(a) * 0.7, abs=0.01)
    assert float(xt.std()) == pytest.approx(float(s), rel=0.02)


def test_weight_on_the_mean_mse_is_seed_003_figure_4_9():
    """The ELBO weighs the posterior mean's MSE by 1 / (2 sigma_t^2) (seed 003 eq. 4.6):
    1 / (2 beta_tilde_t) with the fixed-small variance, at every t >= 2."""
    import numpy as np

    from difftk.analysis.weight_figures import weight_curve
    from difftk.plugins.schedules import Linear
    from difftk.plugins.targets import Eps
    from difftk.plugins.weights import ELBO

    schedule = Linear()
    curve = weight_curve("elbo", ELBO(), {"eps": Eps()}, schedule, mse="mean")
    beta_tilde = schedule.table["posterior_variance"][2:].numpy()
    assert np.allclose(curve.effective["eps"][1:], 1 / (2 * beta_tilde), rtol=1e-6)
    assert curve.mse == "mean"
    on_x0 = weight_curve("elbo", ELBO(), {"eps": Eps()}, schedule)
    assert not np.allclose(on_x0.effective["eps"][1:], curve.effective["eps"][1:])



def test_plot_weights_on_the_mean_needs_a_table(tmp_path):
    from typer.testing import CliRunner

    from difftk.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["plot", "weights", "elbo", "--mse", "mean", "--target", "eps",
                              "-o", str(tmp_path / "w.png"), "--csv", str(tmp_path / "w.csv")])
    assert out.exit_code == 0, out.output
    assert "mean_weight_eps" in (tmp_path / "w.csv").read_text().splitlines()[0]
    out = runner.invoke(app, ["plot", "weights", "min_snr", "--mse", "mean", "--schedule", "edm",
                              "-o", str(tmp_path / "x.png")])
    assert out.exit_code == 1 and "has none" in out.output
