"""Many samples over many processes: each sample from its own seeded stream, so the set does
not depend on how many processes draw it; class-balanced labels; a killed job resumes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from cli_runs import train_run
from conftest import ROOT
from PIL import Image
from typer.testing import CliRunner

from difftk.cli import app

runner = CliRunner()
TINY = ["train.batch_size=16", "model.channels=8", "model.channel_mult=[1]",
        "model.num_res_blocks=1", "model.attention_resolutions=[]", "log.val_every=0",
        "log.num_samples=4", "log.checkpoint_every=0", "log.tensorboard=false",
        "sampler.steps=3", 'precision.name="fp32"', "train.steps=2",
        "train.class_conditional=true"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return train_run(ROOT, tmp_path_factory.mktemp("s"), "recipes/edm.toml", "cond", TINY)


def _sample(run, out, *extra):
    res = runner.invoke(app, ["sample", str(run), "-n", "14", "--steps", "3", "--sampler",
                              "euler_ancestral", "--format", "png-dir", "-o", str(out), *extra])
    assert res.exit_code == 0, res.output
    return res.output


def _pngs(folder):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_two_processes_draw_the_images_one_process_draws(run, tmp_path):
    _sample(run, tmp_path / "one", "--batch-size", "4")
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node=2", "-m", "difftk", "sample", str(run), "-n", "14",
                          "--steps", "3", "--sampler", "euler_ancestral", "--format", "png-dir",
                          "--batch-size", "4", "-o", str(tmp_path / "two"), "--device", "cpu"],
                         capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PYTHONPATH": path})
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("14 samples from step 2") == 1
    one, two = _pngs(tmp_path / "one"), _pngs(tmp_path / "two")
    assert sorted(one) == sorted(two) and len(one) == 14
    for name in one:  # a stochastic sampler: every draw of sample i from its own stream
        assert np.array_equal(one[name], two[name]), name
    # class-balanced: sample i has label i mod 10
    assert [int(n.split("label")[1][:-4]) for n in sorted(one)] == [i % 10 for i in range(14)]


def test_the_batch_size_does_not_change_the_set_beyond_rounding(run, tmp_path):
    a = tmp_path / "a.npz"
    b = tmp_path / "b.npz"
    for out, batch in ((a, "4"), (b, "7")):
        res = runner.invoke(app, ["sample", str(run), "-n", "14", "--steps", "3", "--sampler",
                                  "euler_ancestral", "--batch-size", batch, "-o", str(out)])
        assert res.exit_code == 0, res.output
    x, y = np.load(a)["samples"], np.load(b)["samples"]
    # the same noise for each sample; the network's kernels round differently by batch size
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-4)
    assert np.abs(x[:7] - x[7:]).max() > 0.1  # and the samples differ from each other


def test_a_killed_sampling_job_continues_where_it_stopped(run, tmp_path):
    out = tmp_path / "fid"
    _sample(run, out, "--batch-size", "4")
    full = _pngs(out)
    for name in sorted(full)[5:]:  # the job died after its first batch and one more image
        (out / name).unlink()
    message = _sample(run, out, "--batch-size", "4")
    # batches of 4: the first whole, the second partly there (drawn again), the rest gone
    assert "10 samples" in message and "4 already there" in message
    again = _pngs(out)
    assert sorted(again) == sorted(full)
    for name in full:
        np.testing.assert_allclose(again[name].astype(int), full[name].astype(int), atol=1)
    assert not list(out.glob(".*.tmp"))


def test_under_torchrun_only_a_png_folder_is_written(run, tmp_path):
    from difftk.eval.sample_set import SampleBatches

    assert [list(r) for r in SampleBatches(10, 4, 1, 2).mine()] == [[4, 5, 6, 7]]
    assert [list(r) for r in SampleBatches(10, 4, 0, 2).mine()] == [[0, 1, 2, 3], [8, 9]]
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node=2", "-m", "difftk", "sample", str(run), "-n", "4",
                          "-o", str(tmp_path / "g.png"), "--device", "cpu"],
                         capture_output=True, text=True, timeout=240,
                         env={**os.environ, "PYTHONPATH": path})
    assert res.returncode != 0
    # every rank refuses; whichever says it first, torchrun ends the others
    assert re.search(r"rank [01] of 2: under torchrun, difftk sample writes --format png-dir",
                     res.stderr)
