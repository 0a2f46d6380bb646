"""Seed 004 Coding I.6, I.7 and I.9 as benchmark scripts (benchmarks/seed004_*): each runs on
a tiny setting (Fashion-MNIST, ScoreNet with four channels per level) and writes what the
seed's notebook prints and draws."""

from __future__ import annotations

import csv
import importlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runs import train_run

from difftk.analysis.trained_run import load_trained_run
from difftk.errors import DifftkError

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"
TINY = ["--set", "model.channels=[4,4,4,4]", "--set", "model.embed_dim=8",
        "--set", "train.batch_size=10", "--set", "data.limit=40"]


@pytest.fixture
def benchmark(monkeypatch):
    """Import a benchmark script as a module (they import benchmarks/seed004_training.py)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_subset_variability_records_every_epoch_subset_and_variant(benchmark, tmp_path):
    script = benchmark("seed004_subset_variability")
    result = script.main([str(tmp_path), "--epochs", "2", "--subsets", "2",
                          "--subset-size", "20", *TINY])
    rows = read_csv(tmp_path / "subset_losses.csv")
    keys = [(int(r["epoch"]), int(r["subset"]), r["variant"]) for r in rows]
    assert sorted(keys) == sorted((e, s, v) for e in (1, 2) for s in (0, 1)
                                  for v in ("sum", "mean"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result))
    for variant in ("sum", "mean"):  # the seed's line, recomputed from the CSV
        arr = np.array([[float(r["loss"]) for r in rows if r["variant"] == variant
                         and int(r["epoch"]) == e] for e in (1, 2)])
        line = summary["variants"][variant]
        assert line["avg_var"] == pytest.approx(arr.var(axis=1).mean(), rel=1e-6)
        assert [line[k] for k in ("min", "p25", "median", "p75", "max")] == pytest.approx(
            np.percentile(arr, [0, 25, 50, 75, 100]), rel=1e-6)
    # Same start, same batches and draws: L_sum = d L_mean at the first step, and Adam's
    # update does not depend on the loss's scale (up to its eps), so it stays d = 784.
    assert summary["pixels"] == 784
    assert summary["sum_over_mean"]["min"] == pytest.approx(784, rel=1e-3)
    assert summary["sum_over_mean"]["max"] == pytest.approx(784, rel=1e-3)
    assert (tmp_path / "subset_variability.png").stat().st_size > 0


def test_subset_variability_refuses_more_images_than_the_data_has(benchmark, tmp_path, capsys):
    script = benchmark("seed004_subset_variability")
    with pytest.raises(SystemExit) as exc:
        script.main([str(tmp_path), "--subsets", "3", "--subset-size", "20", *TINY])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "60 training images" in err and "has 40" in err


def test_width_study_writes_curves_and_the_seeds_quantile_line(benchmark, tmp_path):
    script = benchmark("seed004_width_study")
    result = script.main([str(tmp_path), "--epochs", "2", "--train-items", "20",
                          "--val-items", "10", "--widths", "narrow:4,4,4,4", "wide:8,8,8,8",
                          *TINY[4:]])  # widths from --widths, not model.channels
    rows = read_csv(tmp_path / "width_losses.csv")
    assert [(r["width"], int(r["epoch"])) for r in rows] == [
        ("narrow", 1), ("narrow", 2), ("wide", 1), ("wide", 2)]
    assert all(float(r["seconds"]) > 0 and np.isfinite(float(r["train_loss"])) for r in rows)
    # The output map mu = rho0 (x - rho1 delta) starts at rho0 = rho1 = 1 and trains.
    assert all(np.isfinite(float(r["rho0"])) and float(r["rho1"]) != 1.0 for r in rows)
    widths = result["widths"]
    assert widths["narrow"]["channels"] == [4, 4, 4, 4] and widths["wide"]["channels"] == [8] * 4
    assert widths["wide"]["parameters"] > widths["narrow"]["parameters"]
    for name, line in widths.items():
        val = [float(r["val_loss"]) for r in rows if r["width"] == name]
        assert line["min"] == pytest.approx(min(val)) and line["max"] == pytest.approx(max(val))
        assert line["variance"] == pytest.approx(np.var(val), rel=1e-6, abs=1e-12)
    assert json.loads((tmp_path / "summary.json").read_text())["epoch"].startswith("20 training")
    assert (tmp_path / "width_study.png").stat().st_size > 0


def test_width_study_refuses_an_unknown_width(benchmark, tmp_path, capsys):
    script = benchmark("seed004_width_study")
    with pytest.raises(SystemExit) as exc:
        script.main([str(tmp_path), "--widths", "huge"])
    assert exc.value.code == 2
    assert "neither a ScoreNet preset" in capsys.readouterr().err


def test_fid_script_refuses_a_bad_step_count():
    out = subprocess.run(["bash", str(BENCHMARKS / "seed004_fid.sh"), "ten"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "STEPS must be a positive whole number" in out.stderr


TINY_EPS_RUN = ["model.channels=8", "model.channel_mult=[1]", "train.steps=2",
                "train.batch_size=8", "log.val_every=0", "log.sample_every=0",
                "log.checkpoint_every=0", "ema.name=\"none\""]


def test_mean_blindness_probe_reads_eps_errors_and_the_shift_response(benchmark, root, tmp_path):
    run = train_run(root, tmp_path, "recipes/final_project/02_eps_elbo_weight.toml", "eps",
                    TINY_EPS_RUN)
    script = benchmark("seed004_mean_blindness")
    out = tmp_path / "probe.json"
    script.main([str(run), "--items", "200", "--times", "200", "5", "--shifts", "0.5",
                 "--json", str(out)])
    (result,) = json.loads(out.read_text())
    assert result["step"] == 2 and result["items"] == 200
    # The noise's image mean over 8x8 digits has rms 1/8: the closed form the table compares to.
    for row in result["by_time"]:
        assert row["noise_image_mean_rms"] == pytest.approx(1 / 8, rel=0.15)
        assert np.isfinite(row["eps_mse"]) and row["image_mean_error_rms"] > 0
    assert [r["t"] for r in result["by_time"]] == [200, 5]
    (shift,) = result["shift_response_at_T"]
    assert shift["shift"] == 0.5 and np.isfinite(shift["share_of_ideal"])


class InputAsEps(torch.nn.Module):
    """eps_hat = x_t: on the seed's schedule (alpha_T = 0.0056) almost the exact eps at t = T,
    and a network that reads the image mean of its input fully."""

    def forward(self, x, *args, **kwargs):
        return x


def test_mean_blindness_probe_sees_a_network_that_reads_the_image_mean(benchmark, root,
                                                                       tmp_path, monkeypatch):
    run = train_run(root, tmp_path, "recipes/final_project/02_eps_elbo_weight.toml", "eps",
                    TINY_EPS_RUN)
    script = benchmark("seed004_mean_blindness")

    def with_input_as_eps(*args, **kwargs):
        trained = load_trained_run(*args, **kwargs)
        trained.denoiser.net = InputAsEps()
        return trained

    monkeypatch.setattr(script, "load_trained_run", with_input_as_eps)
    result = script.probe(str(run), items=200, times=[200], shifts=[0.5])
    (row,) = result["by_time"]
    # mean(x_t - eps) = alpha_T mean(x0) + (sigma_T - 1) mean(eps): far below the noise's own.
    assert row["image_mean_error_rms"] < 0.1 * row["noise_image_mean_rms"]
    # x_t + c moves eps_hat by c, which is c / sigma_T up to sigma_T = 0.99998.
    assert result["shift_response_at_T"][0]["share_of_ideal"] == pytest.approx(1.0, abs=1e-3)


def test_mean_blindness_probe_refuses_a_run_that_does_not_predict_eps(benchmark, root, tmp_path):
    run = train_run(root, tmp_path, "recipes/final_project/01_mean_matching.toml", "mean",
                    TINY_EPS_RUN)
    script = benchmark("seed004_mean_blindness")
    with pytest.raises(DifftkError, match="target mean"):
        script.main([str(run)])
