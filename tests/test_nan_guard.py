"""The NaN guard: bad steps never touch the weights; persistent ones restore, then stop."""

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from difftk.cli import app
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.nan_guard import INJECT_ENV, NonFiniteTrainingError, nonfinite_injection
from difftk.train.trainer import Trainer

runner = CliRunner()
SMALL = ["model.width=16", "model.depth=1", "train.batch_size=32", "log.every=4",
         "log.num_samples=8", "sampler.steps=2", "log.val_every=0"]


def trainer(root, tmp_path, name, *extra):
    sets = [f'run.out_dir="{tmp_path}"', f'run.name="{name}"', *SMALL, *extra]
    return Trainer(load_recipe(root / "recipes/toy2d.toml", sets, warn=False), make_runtime("cpu"),
                   progress=False)


def test_injection_hook_parses_single_steps_and_open_ranges():
    hook = nonfinite_injection("3, 7-")
    assert [s for s in range(1, 10) if hook(s)] == [3, 7, 8, 9]
    assert nonfinite_injection("") is None


@pytest.mark.parametrize("implementation", ["auto", "for_loop"])
def test_one_nan_step_is_skipped_and_the_run_completes(root, tmp_path, monkeypatch,
                                                       implementation):
    # auto: fused Adam, the skip decided on the device and read every log.every steps;
    # for_loop: an optimizer without a skip flag, the verdict read on the host every step.
    monkeypatch.setenv(INJECT_ENV, "5")
    tr = trainer(root, tmp_path, "one", "train.steps=10", "log.checkpoint_every=0",
                 f"optimizer.implementation={implementation}")
    assert tr.optimisation_step._skip_on_device == (implementation == "auto")
    for _ in range(4):
        tr.train_step(*tr.batches.next())
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    ema_before = {k: v.clone() for k, v in tr.ema.state_dict().items()}
    result = tr.train_step(*tr.batches.next())  # step 5: NaN loss
    if implementation == "auto":  # the host learns of it when it reads the counters
        assert tr.guard.skipped == 0 and result.verdict == "ok"
        assert tr.guard.settle() == "skip"
    assert not result.applied and tr.guard.skipped == 1
    assert all(torch.equal(before[k], v) for k, v in tr.model.state_dict().items())
    assert all(torch.equal(ema_before[k], v) for k, v in tr.ema.state_dict().items())
    tr.fit()
    assert tr.step == 10 and tr.guard.skipped == 1 and tr.guard.restores == 0
    weights = load_file(str(tmp_path / "one/checkpoints/latest/model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert any(not torch.equal(before[k], weights[k]) for k in weights)  # training went on


def test_persistent_nan_restores_then_stops_with_exit_code_and_message(root, tmp_path, monkeypatch):
    monkeypatch.setenv(INJECT_ENV, "6-")
    sets = [f'run.out_dir="{tmp_path}"', 'run.name="bad"', *SMALL, "train.steps=20",
            "log.checkpoint_every=4"]
    args = ["train", str(root / "recipes/toy2d.toml"), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == NonFiniteTrainingError.exit_code == 3
    assert "restored checkpoint 00000004 (step 4) and lowered the learning rate by 0.5" in res.stderr
    assert "training stopped" in res.stderr and "(00000004) is intact" in res.stderr
    assert "Traceback" not in res.stderr
    ck = tmp_path / "bad/checkpoints"
    assert sorted(p.name for p in ck.iterdir() if p.name.isdigit()) == ["00000004"]
    assert (ck / "latest").resolve().name == "00000004"
    weights = load_file(str(ck / "00000004/model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    # the checkpoint still holds the state of step 4: resuming it rebuilds a working trainer
    monkeypatch.delenv(INJECT_ENV)
    again = Trainer(load_recipe(root / "recipes/toy2d.toml", sets, warn=False), make_runtime("cpu"),
                    resume=True, progress=False)
    assert again.step == 4


def test_guard_off_leaves_nan_to_the_divergence_check(root, tmp_path, monkeypatch):
    monkeypatch.setenv(INJECT_ENV, "2-")
    tr = trainer(root, tmp_path, "off", "train.steps=8", "train.nan_guard=false",
                 "log.checkpoint_every=0")
    try:
        tr.fit()
    except NonFiniteTrainingError:
        raise AssertionError("the guard is off") from None
    except Exception as exc:  # TrainingDivergedError from the logged loss
        assert "non-finite between steps 1 and 4" in str(exc)
    else:
        raise AssertionError("a NaN run must not finish")


def test_stop_message_counts_bad_steps_inclusively(root, tmp_path, monkeypatch):
    monkeypatch.setenv(INJECT_ENV, "1-")
    tr = trainer(root, tmp_path, "count", "train.steps=10", "log.checkpoint_every=0")
    try:
        tr.fit()
    except NonFiniteTrainingError as exc:
        assert "3 steps in a row (steps 1 to 3)" in str(exc)
        assert "no intact checkpoint exists" in str(exc)
    else:
        raise AssertionError("an all-NaN run must stop")


def test_restore_never_writes_into_the_checkpoint_and_names_a_checked_one(root, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv(INJECT_ENV, "6-")
    tr = trainer(root, tmp_path, "truth", "train.steps=20", "log.checkpoint_every=4",
                 "log.keep_last=3")
    for _ in range(4):
        tr.train_step(*tr.batches.next())
    ck4 = tr.save()
    files = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ck4.iterdir()}
    model = ck4 / "model.safetensors"  # damage it: the guard must not call it intact
    model.write_bytes(model.read_bytes()[:-1] + bytes([model.read_bytes()[-1] ^ 1]))
    files["model.safetensors"] = (model.stat().st_ino, model.stat().st_mtime_ns)
    try:
        tr.fit()
    except NonFiniteTrainingError as exc:
        assert "no intact checkpoint exists" in str(exc) and "is intact" not in str(exc)
    else:
        raise AssertionError("the run must stop")
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in ck4.iterdir()} == files


def test_device_counters_reach_the_per_step_verdicts_at_each_read():
    # Steps 1-12, read every 4: bad at 4, 5, 6 (a run across a read) and 11 (alone).
    from difftk.train.nan_guard import NanGuard

    guard = NanGuard(patience=3, check_every=4, last_step=12)
    verdicts = {}
    for step in range(1, 13):
        guard.record(torch.tensor(step not in (4, 5, 6, 11)), step)
        if guard.due(step):
            verdicts[step] = guard.settle()
    assert verdicts == {4: "skip", 8: "restore", 12: "skip"}
    assert guard.skipped == 4 and guard.bad_in_row == 0
    # the run that tripped the guard is the one the per-step guard would have named
    guard2 = NanGuard(patience=3, check_every=4, max_restores=0)
    for step in range(1, 5):
        guard2.record(torch.tensor(False), step)
    assert guard2.settle() == "stop" and guard2.bad_steps() == "steps 1 to 3"
    assert guard2.bad_in_row == 3 and guard2.skipped == 4
