"""End to end: training beats baselines, resume is exact, runs leave what they promise."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from difftk.cli import app
from difftk.errors import TrainingDivergedError
from difftk.eval.distances import energy_distance, sliced_wasserstein
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

runner = CliRunner()


def toy_recipe(root, tmp_path, name, *extra):
    sets = [f"run.out_dir={str(tmp_path)!r}".replace("'", '"'), f'run.name="{name}"',
            "log.val_every=0", *extra]
    return load_recipe(root / "recipes/toy2d.toml", sets, warn=False)


def test_toy2d_beats_untrained_model_and_gaussian_fit(root, tmp_path):
    r = toy_recipe(root, tmp_path, "fit", "train.steps=800", "log.checkpoint_every=0",
                   "log.num_samples=2000", "log.every=200")
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    untrained = trainer.monitor.draw_samples(2000, seed=1)
    trainer.fit()
    trained = trainer.monitor.draw_samples(2000, seed=1)
    data = trainer.data.heldout[:2000]
    train = trainer.data.train
    mean, cov = train.mean(0), torch.cov(train.T)
    gauss = torch.distributions.MultivariateNormal(mean, cov).sample((2000,))
    for distance in (energy_distance, sliced_wasserstein):
        d_trained = distance(trained, data)
        assert d_trained < distance(gauss, data) / 2, distance.__name__
        assert d_trained < distance(untrained, data) / 4, distance.__name__


def _final_tensors(run_dir):
    ck = run_dir / "checkpoints" / "latest"
    return {name: load_file(str(ck / f"{name}.safetensors"))
            for name in ("model", "ema", "optimizer")}


def test_resume_is_bit_identical(root, tmp_path):
    common = ["model.width=32", "train.batch_size=64", "log.every=5",
              "log.checkpoint_every=10", "log.num_samples=8", "sampler.steps=2"]
    whole = toy_recipe(root, tmp_path, "whole", "train.steps=20", *common)
    Trainer(whole, make_runtime("cpu"), progress=False).fit()
    first = toy_recipe(root, tmp_path, "split", "train.steps=10", *common)
    Trainer(first, make_runtime("cpu"), progress=False).fit()
    sets = []
    for item in ["train.steps=20", *common, f'run.out_dir="{tmp_path}"', 'run.name="split"',
                 "log.val_every=0"]:
        sets += ["--set", item]
    out = runner.invoke(app, ["train", str(root / "recipes/toy2d.toml"), "--resume",
                              "--no-progress", *sets])
    assert out.exit_code == 0, out.stderr
    a, b = _final_tensors(tmp_path / "whole"), _final_tensors(tmp_path / "split")
    for group in a:
        assert a[group].keys() == b[group].keys()
        for key in a[group]:
            assert torch.equal(a[group][key], b[group][key]), (group, key)


def test_existing_run_is_not_overwritten(root, tmp_path):
    r = toy_recipe(root, tmp_path, "once", "train.steps=2", "model.width=16",
                   "log.num_samples=8", "sampler.steps=2")
    Trainer(r, make_runtime("cpu"), progress=False).fit()
    with pytest.raises(Exception, match="already holds a run"):
        Trainer(r, make_runtime("cpu"), progress=False)


def test_nan_loss_stops_with_a_sentence_and_keeps_the_checkpoint(root, tmp_path):
    r = toy_recipe(root, tmp_path, "nan", "train.steps=40", "model.width=16", "log.every=10",
                   "log.checkpoint_every=10", "train.batch_size=32", "train.nan_guard=false")
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    trainer.train_step(*trainer.batches.next())
    trainer.step = 0
    trainer.save()
    trainer.batches.data.fill_(float("nan"))  # the in-memory training set
    with pytest.raises(TrainingDivergedError, match="non-finite between steps 1 and 10"):
        trainer.fit()
    weights = load_file(str(tmp_path / "nan/checkpoints/00000000/model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "difftk.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    """recipes/edm.toml and recipes/ddpm.toml, shortened with --set, in real processes."""
    from conftest import ROOT

    out = tmp_path_factory.mktemp("runs")
    short = ["train.steps=12", "log.every=4", "log.checkpoint_every=6", "log.val_every=6",
             "log.sample_every=6", "log.num_samples=16", "model.channels=16",
             f'run.out_dir="{out}"']
    results = {}
    for name, extra in (("edm", ["sampler.steps=4"]), ("ddpm", ["sampler.steps=20"])):
        args = ["train", str(ROOT / f"recipes/{name}.toml"), "--no-progress"]
        for s in short + extra:
            args += ["--set", s]
        results[name] = _cli(*args, cwd=out)
    return out, results


def test_edm_recipe_writes_checkpoints_events_and_grid(short_runs):
    out, results = short_runs
    assert results["edm"].returncode == 0, results["edm"].stderr
    run = out / "edm"
    assert (run / "recipe.toml").is_file()
    assert "sigma_data = 0.7" in (run / "recipe.toml").read_text()  # measured on digits
    steps = sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == ["00000006", "00000012"]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "samples" / "final.png").is_file()
    assert (run / "samples" / "step_00000006.png").is_file()


@pytest.mark.parametrize("run, sampler", [("edm", "heun"), ("ddpm", "ddpm"), ("ddpm", "heun")])
def test_sample_command_writes_png_and_npz(short_runs, run, sampler):
    out, results = short_runs
    assert results[run].returncode == 0, results[run].stderr
    png = out / f"{run}-{sampler}.png"
    res = _cli("sample", str(out / run / "checkpoints" / "latest"), "--sampler", sampler,
               "--steps", "5", "-n", "9", "-o", str(png), cwd=out)
    assert res.returncode == 0, res.stderr
    assert png.stat().st_size > 100
    npz = out / f"{run}-{sampler}.npz"
    res = _cli("sample", str(out / run), "--sampler", sampler, "--steps", "5", "-n", "4",
               "-o", str(npz), cwd=out)
    assert res.returncode == 0, res.stderr
    import numpy as np

    assert np.load(npz)["samples"].shape == (4, 1, 8, 8)


def test_truncated_checkpoint_is_one_sentence(short_runs, tmp_path):
    import shutil

    out, _ = short_runs
    ck = tmp_path / "ck"
    shutil.copytree(out / "edm" / "checkpoints" / "latest", ck)
    model = ck / "ema.safetensors"  # the weights sample reads
    model.write_bytes(model.read_bytes()[:200])
    res = _cli("sample", str(ck), "-n", "2", "-o", str(tmp_path / "x.png"), cwd=tmp_path)
    assert res.returncode == 1
    assert "damaged or truncated" in res.stderr and "Traceback" not in res.stderr
    res = _cli("sample", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert res.returncode == 1 and "no such checkpoint" in res.stderr


def test_time_limit_stops_early_with_checkpoint_and_samples(root, tmp_path):
    r = toy_recipe(root, tmp_path, "timed", "train.steps=100000", "train.time_limit=0.002",
                   "model.width=16", "log.num_samples=8", "sampler.steps=2")
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    grid = trainer.fit()
    assert 0 < trainer.step < 100000
    assert grid.is_file()
    assert (tmp_path / "timed" / "checkpoints" / f"{trainer.step:08d}").is_dir()


# Parameters that make each schedule change within the 20 steps of the test (every one a
# different curve); a schedule added to difftk must be added here to be tested.
SCHEDULE_SETTINGS = {
    "constant": [],
    "linear_warmup": ["lr_schedule.warmup_steps=8"],
    "cosine": ["lr_schedule.warmup_steps=4", "lr_schedule.min_lr_ratio=0.1"],
    "linear_decay": ["lr_schedule.warmup_steps=4"],
    "step": ["lr_schedule.step_size=7", "lr_schedule.gamma=0.5", "lr_schedule.warmup_steps=3"],
    "inverse_sqrt": ["lr_schedule.ref_batches=5", "lr_schedule.warmup_kimg=0.5"],
}


def test_every_lr_schedule_is_tested_for_resume(registry):
    assert set(registry.names("lr_schedules")) == set(SCHEDULE_SETTINGS)


@pytest.mark.parametrize("schedule", sorted(SCHEDULE_SETTINGS))
def test_resume_is_bit_identical_on_every_lr_schedule(root, tmp_path, schedule, monkeypatch):
    """A 20-step run stopped by SIGTERM after step 10 and resumed ends where the
    uninterrupted run ends, on every schedule's curve (the factor is a function of the step
    and the budget, both restored)."""
    import signal

    from difftk.train import interrupt
    from difftk.train.interrupt import TrainingInterrupted
    from difftk.train.session import run_training

    sets = [f'lr_schedule.name="{schedule}"', *SCHEDULE_SETTINGS[schedule], "model.width=16",
            "train.batch_size=32", "log.every=5", "log.checkpoint_every=0",
            "log.num_samples=4", "sampler.steps=2", "log.val_every=0", "log.tensorboard=false",
            "train.steps=20"]
    run_training(toy_recipe(root, tmp_path, "whole", *sets), make_runtime("cpu"),
                 progress=False)
    periodic = Trainer._periodic

    def sigterm_after_step_10(self, *args, **kwargs):
        out = periodic(self, *args, **kwargs)
        if self.step == 10:
            interrupt._received.append(signal.SIGTERM)  # as the handler records a signal
        return out

    monkeypatch.setattr(Trainer, "_periodic", sigterm_after_step_10)
    with pytest.raises(TrainingInterrupted):
        run_training(toy_recipe(root, tmp_path, "split", *sets), make_runtime("cpu"),
                     progress=False)
    monkeypatch.undo()
    run_training(toy_recipe(root, tmp_path, "split", *sets), make_runtime("cpu"), "yes",
                 progress=False)
    a, b = _final_tensors(tmp_path / "whole"), _final_tensors(tmp_path / "split")
    for group in a:
        for key in a[group]:
            assert torch.equal(a[group][key], b[group][key]), (schedule, group, key)
