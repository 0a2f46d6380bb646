"""`difftk analyze` on a tiny trained run: every command writes its PNG, CSV and TensorBoard
image, and bad input ends in one sentence."""

import csv

import numpy as np
import pytest
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
