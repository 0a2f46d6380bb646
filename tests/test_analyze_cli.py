"""`difftk analyze` on a tiny trained run: every command writes its PNG, CSV and TensorBoard
image, and bad input ends in one sentence."""

import csv

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difftk.cli import app

runner = CliRunner()
TINY = ["model.width=16", "model.depth=1", "train.batch_size=32", "train.steps=6",
        "log.every=3", "log.num_samples=8", "sampler.steps=2", "log.val_every=0",
        "log.checkpoint_every=0"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    from pathlib import Path

    recipe = Path(__file__).resolve().parent.parent / "recipes/toy2d.toml"
    args = ["train", str(recipe), "--no-progress", "--set", f'run.out_dir="{root}"',
            "--set", 'run.name="tiny"']
    for s in TINY:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return root / "tiny"


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def analysis_events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0})
    acc.Reload()
    return set(acc.Tags()["images"])


def test_analyze_information_writes_figure_csv_and_tensorboard(run_dir, tmp_path):
    out = tmp_path / "info.png"
    res = runner.invoke(app, ["analyze", "information", str(run_dir), "-o", str(out),
                              "--points", "9", "--samples", "64"])
    assert res.exit_code == 0, res.output
    rows = read_csv(tmp_path / "info.csv")
    assert {r["target"] for r in rows} == {"x0", "eps", "v", "score"}
    x0 = [r for r in rows if r["target"] == "x0"]
    assert len(x0) == 9 and all("t" in r for r in x0)
    mi = np.array([float(r["mi_nats"]) for r in x0])
    assert np.all(np.diff(mi) >= 0)  # MMSE >= 0, so I(x0; x_t) never falls with SNR
    # the EDM schedule's time u runs from low noise (0) to high noise (1) as logSNR falls
    t = np.array([float(r["t"]) for r in x0])
    assert np.all(np.diff(t) <= 0)
    assert "analysis/information" in analysis_events(run_dir)


def test_analyze_rejects_a_missing_run_in_one_sentence(tmp_path):
    res = runner.invoke(app, ["analyze", "information", str(tmp_path / "nothing")])
    assert res.exit_code != 0
    assert "no such checkpoint" in res.stderr and "Traceback" not in res.stderr


def test_per_sample_gradients_sum_to_the_batch_gradient(run_dir):
    import torch

    from difftk.analysis.gradient_variance import _per_sample_gradients
    from difftk.analysis.trained_run import load_trained_run

    run = load_trained_run(run_dir, "cpu")
    x0 = run.heldout[:5]
    levels = run.schedule.levels_from_sigma_edm(torch.tensor([0.05, 0.3, 1.0, 4.0, 20.0]))
    x_t = x0 * levels.alpha[:, None] + torch.randn_like(x0) * levels.sigma[:, None]
    per_sample = torch.stack(list(_per_sample_gradients(run, x0, x_t, levels, None)))
    params = list(run.denoiser.parameters())
    loss = (run.denoiser.x0_and_extra(x_t, levels)[0] - x0).square().mean(1).sum()
    batch = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    assert torch.allclose(per_sample.sum(0), batch, rtol=1e-4, atol=1e-6)


def test_analyze_gradients_table_csv_and_the_edm_identity(run_dir, tmp_path):
    out = tmp_path / "grad.png"
    res = runner.invoke(app, ["analyze", "gradients", str(run_dir), "-o", str(out),
                              "--targets", "x0,eps,v,edm,run", "--buckets", "3",
                              "--samples", "12"])
    assert res.exit_code == 0, res.output
    assert "share_projection" in res.output
    rows = read_csv(tmp_path / "grad.csv")
    assert len(rows) == 5 * 3
    by = {(r["target"], int(r["bucket"])): r for r in rows}
    for b in range(3):
        # EDM's weight 1/c_out^2 on the x0-MSE makes the run's loss the unit-weight
        # regression of the raw network output (seed 001 §8.1): same gradients.
        assert np.isclose(float(by["run", b]["grad_variance"]),
                          float(by["edm", b]["grad_variance"]), rtol=1e-5)
    for t in ("x0", "eps", "v", "edm", "run"):
        assert np.isclose(sum(float(by[t, b]["share_projection"]) for b in range(3)), 1.0)
    # buckets are ordered by noise level
    mids = [float(by["x0", b]["log_snr_mid"]) for b in range(3)]
    assert mids == sorted(mids)
    assert "analysis/gradients" in analysis_events(run_dir)


def test_analyze_gradients_rejects_an_unknown_target(run_dir):
    res = runner.invoke(app, ["analyze", "gradients", str(run_dir), "--targets", "x0,epz",
                              "--samples", "4", "--buckets", "2"])
    assert res.exit_code != 0 and "epz" in res.stderr and "Traceback" not in res.stderr


def test_analyze_targets_writes_rows_with_t_and_the_summary_table(run_dir, tmp_path):
    out = tmp_path / "targets.png"
    res = runner.invoke(app, ["analyze", "targets", str(run_dir), "-o", str(out), "--points",
                              "4", "--samples", "64"])
    assert res.exit_code == 0, res.output
    assert "favours" in res.output
    rows = read_csv(tmp_path / "targets.csv")
    assert len(rows) == 2 * 4 * 4 and all(r["t"] for r in rows)
    summary = read_csv(tmp_path / "targets_summary.csv")
    assert {(r["source"], r["target"]) for r in summary} == {
        (s, t) for s in ("network", "gaussian") for t in ("x0", "eps", "v", "score")}
    assert "analysis/targets" in analysis_events(run_dir)


def test_a_latent_run_is_analysed_on_its_latents(tmp_path):
    # DCT keeping 4x4 of the digits' 8x8: the analyses feed the network what it trained on
    from pathlib import Path

    from difftk.analysis.trained_run import load_trained_run
    from difftk.recipe import load_recipe

    recipe = Path(__file__).resolve().parent.parent / "recipes/edm.toml"
    args = ["train", str(recipe), "--no-progress"]
    for s in (f'run.out_dir="{tmp_path}"', 'run.name="dct"', 'latents.name="dct"',
              "latents.keep=4", "model.channels=8", "train.batch_size=16", "train.steps=2",
              "log.num_samples=4", "sampler.steps=2", "log.val_every=0",
              "log.checkpoint_every=0"):
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    run = load_trained_run(tmp_path / "dct", device="cpu")
    assert tuple(run.heldout.shape[1:]) == (1, 4, 4)
    pixels = load_recipe(recipe, warn=False).parts["data"].load().heldout
    # the orthonormal DCT keeps the (0, 0) coefficient: 8 x the image mean on an 8x8 image
    assert torch.allclose(run.heldout[:, 0, 0, 0], 8 * pixels.mean(dim=(1, 2, 3)), atol=1e-5)


def test_the_gradient_noise_fit_recovers_a_power_law():
    """log-log least squares on rows that follow grad_variance = 3 Var(y | x_t)^0.8 exactly,
    Var(y | x_t) read from target rows by log-linear interpolation in SNR."""
    from difftk.analysis.gradient_noise_fit import conditional_variance_at, gradient_noise_fit

    target_rows = [{"source": "network", "target": "x0", "snr": float(np.exp(ls)),
                    "conditional_variance": float(np.exp(-ls))} for ls in np.linspace(-6, 6, 7)]
    assert conditional_variance_at(target_rows, "x0", np.array([1.0]))[0] == pytest.approx(
        np.exp(-1.0))
    grad_rows = [{"target": "x0", "bucket": b, "log_snr_mid": ls,
                  "grad_variance": 3.0 * np.exp(-ls) ** 0.8}
                 for b, ls in enumerate(np.linspace(-5, 5, 6))]
    points, fits = gradient_noise_fit(grad_rows, target_rows, targets=("x0",))
    assert len(points) == 6 and len(fits) == 1
    assert fits[0]["slope"] == pytest.approx(0.8) and fits[0]["r2"] == pytest.approx(1.0)
    assert np.exp(fits[0]["intercept"]) == pytest.approx(3.0)


def test_analyze_gradient_noise_writes_points_fits_and_figure(run_dir, tmp_path):
    out = tmp_path / "noise.png"
    res = runner.invoke(app, ["analyze", "gradient-noise", str(run_dir), "-o", str(out),
                              "--buckets", "3", "--samples", "12", "--points", "5"])
    assert res.exit_code == 0, res.output
    points, fits = read_csv(tmp_path / "noise.csv"), read_csv(tmp_path / "noise.fit.csv")
    assert {f["target"] for f in fits} == {"x0", "eps", "v", "score"}
    for fit in fits:
        mine = [p for p in points if p["target"] == fit["target"]]
        x = np.log([float(p["conditional_variance"]) for p in mine])
        y = np.log([float(p["grad_variance"]) for p in mine])
        assert float(fit["slope"]) == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-6)
        assert 0.0 <= float(fit["r2"]) <= 1.0
    assert out.stat().st_size > 0 and "slope" in res.output
