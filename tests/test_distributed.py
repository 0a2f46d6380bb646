"""One recipe, many processes: real gloo process groups started by torchrun on the CPU.

A run's result does not depend on how many processes ran it or how each split its slice
into micro-batches (docs/distributed.md); only rank 0 writes; a 2-process checkpoint
resumes on 1 process; a rank that raises ends the group with a sentence.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT
from safetensors.torch import load_file

from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

SMALL = ["model.width=16", "model.depth=1", "train.batch_size=32", "log.every=1",
         "log.num_samples=8", "sampler.steps=2", "log.val_every=3", "log.checkpoint_every=3",
         "lr_schedule.name=\"constant\""]
# float32 sums in another order: what "the same" means between process counts
RTOL, ATOL = 1e-4, 1e-6


def _sets(out, name, *extra):
    return [f'run.out_dir="{out}"', f'run.name="{name}"', *SMALL, *extra]


def _torchrun_command(out, name, *extra, script=None, nproc=2, resume=False):
    """(command line, environment) of ``difftk train`` on toy2d under torchrun."""
    args = ["--resume"] if resume else []
    for s in _sets(out, name, *extra):
        args += ["--set", s]
    target = [str(script)] if script else ["-m", "difftk"]
    # this source tree's difftk in the child processes too, whatever the working directory
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    return ([sys.executable, "-m", "torch.distributed.run", "--standalone",
             f"--nproc-per-node={nproc}", *target, "train", str(ROOT / "recipes/toy2d.toml"),
             "--no-progress", *args], {**os.environ, "PYTHONPATH": path})


def _torchrun(out, name, *extra, **options):
    command, env = _torchrun_command(out, name, *extra, **options)
    return subprocess.run(command, capture_output=True, text=True, cwd=out, timeout=240, env=env)


def _in_process(out, name, *extra, resume=False):
    r = load_recipe(ROOT / "recipes/toy2d.toml", _sets(out, name, *extra), warn=False)
    trainer = Trainer(r, make_runtime("cpu"), resume=resume, progress=False)
    trainer.fit()
    return trainer


def _losses(run_dir, tag="loss/train") -> dict[int, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}


def _weights(run_dir, step):
    ck = run_dir / "checkpoints" / f"{step:08d}"
    return {g: load_file(str(ck / f"{g}.safetensors")) for g in ("model", "ema", "optimizer")}


def _max_rel_diff(a: dict, b: dict) -> float:
    worst = 0.0
    for group in a:
        assert a[group].keys() == b[group].keys(), group
        for key, value in a[group].items():
            torch.testing.assert_close(b[group][key], value, rtol=RTOL, atol=ATOL,
                                       msg=f"{group}/{key}")
            scale = value.abs().max().clamp(min=1e-12)
            worst = max(worst, float((b[group][key] - value).abs().max() / scale))
    return worst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """3 steps on 2 processes; 6 on 1 process; 6 on 1 process with 4 micro-batches."""
    out = tmp_path_factory.mktemp("dist")
    two = _torchrun(out, "two", "train.steps=3")
    assert two.returncode == 0, two.stderr
    # rank 0's last line survives the process's immediate exit (Runtime.exit_process)
    assert two.stdout.count("trained 3 steps in") == 1, two.stdout
    _in_process(out, "one", "train.steps=6")
    _in_process(out, "accum", "train.steps=6", "train.grad_accumulation=4")
    return out


def test_two_processes_and_accumulation_match_one_process(runs):
    one, two, accum = _losses(runs / "one"), _losses(runs / "two"), _losses(runs / "accum")
    assert sorted(two) == [1, 2, 3] and sorted(one) == sorted(accum) == list(range(1, 7))
    for step, loss in two.items():
        assert loss == pytest.approx(one[step], rel=RTOL), step
    for step, loss in accum.items():
        assert loss == pytest.approx(one[step], rel=RTOL), step
    assert len(set(one.values())) == 6  # the steps differ: the comparison is not vacuous
    # the validation loss, drawn in chunks shared out over the processes, is the same too
    val_one, val_two = _losses(runs / "one", "loss/validation"), _losses(runs / "two", "loss/validation")
    assert val_two[3] == pytest.approx(val_one[3], rel=RTOL)
    worst = _max_rel_diff(_weights(runs / "one", 3), _weights(runs / "two", 3))
    worst = max(worst, _max_rel_diff(_weights(runs / "one", 6), _weights(runs / "accum", 6)))
    print(f"max relative difference of weights, EMA and Adam moments: {worst:.2e}")


def test_only_rank_zero_writes_and_the_files_match_one_process(runs):
    two, one = runs / "two", runs / "one"
    assert len(list((two / "tb").glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (two / "samples").iterdir()) == ["final.png"]
    # train.lock is the command line's lock on the run directory (the in-process run has none)
    assert sorted(p.name for p in two.iterdir() if p.name != "train.lock") == sorted(
        p.name for p in one.iterdir())
    assert not list(two.rglob("*.tmp"))


def test_a_two_process_checkpoint_resumes_on_one_process(runs, tmp_path):
    shutil.copytree(runs / "two", tmp_path / "two", symlinks=True)
    _in_process(tmp_path, "two", "train.steps=6", resume=True)
    _max_rel_diff(_weights(runs / "one", 6), _weights(tmp_path / "two", 6))
    resumed = _losses(tmp_path / "two")
    one = _losses(runs / "one")
    for step in (4, 5, 6):
        assert resumed[step] == pytest.approx(one[step], rel=RTOL), step


def test_fsdp_resumes_a_ddp_checkpoint_and_matches_one_process(runs, tmp_path):
    # FSDP2 on gloo (CPU): the checkpoint of 2 DDP processes is sharded on load, trained
    # on, and gathered back into the same single files one process writes.
    shutil.copytree(runs / "two", tmp_path / "two", symlinks=True)
    args = ["train.steps=6", 'train.strategy="fsdp"']
    res = _torchrun(tmp_path, "two", *args, resume=True)
    assert res.returncode == 0, res.stderr
    _max_rel_diff(_weights(runs / "one", 6), _weights(tmp_path / "two", 6))
    one, resumed = _losses(runs / "one"), _losses(tmp_path / "two")
    for step in (4, 5, 6):
        assert resumed[step] == pytest.approx(one[step], rel=RTOL), step


FAILING = """
import os, sys
from difftk.errors import DifftkError
from difftk.train.trainer import Trainer

original = Trainer.train_step


def failing(self, x0, labels):
    if os.environ["RANK"] == "1" and self.step == 2:
        raise DifftkError("the disk of this node is full")
    return original(self, x0, labels)


Trainer.train_step = failing
from difftk.cli import main

main()
"""


def test_a_failing_rank_ends_the_group_with_one_sentence(tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    start = time.perf_counter()
    res = _torchrun(tmp_path, "fail", "train.steps=50", script=script)
    assert res.returncode != 0
    assert "error: rank 1 of 2: the disk of this node is full" in res.stderr
    assert "Traceback" not in res.stderr.split("error: rank 1 of 2")[0]
    assert time.perf_counter() - start < 120  # no hang until the group's timeout


def test_memory_states_the_per_device_budget_of_a_sharded_run(root):
    from difftk.train.memory import memory_report

    report = memory_report(load_recipe(root / "recipes/toy2d.toml", ["model.width=64"], warn=False))
    one = report.budget(False)
    ddp = report.budget(False, world_size=8, strategy="ddp")
    fsdp = report.budget(False, world_size=8, strategy="fsdp", accumulation=2)
    assert ddp["master weights (fp32)"] == one["master weights (fp32)"]
    assert ddp["activations"] == pytest.approx(one["activations"] / 8)
    assert fsdp["optimizer moments (fp32)"] == pytest.approx(one["optimizer moments (fp32)"] / 8)
    assert fsdp["activations"] == pytest.approx(one["activations"] / 16)
    assert 0 < fsdp["gathered unit (fsdp)"] <= one["master weights (fp32)"]
    from typer.testing import CliRunner

    from difftk.cli import app

    res = CliRunner().invoke(app, ["memory", str(root / "recipes/toy2d.toml"), "--set",
                                   'train.strategy="fsdp"', "--world-size", "8"])
    assert res.exit_code == 0, res.output
    assert "per device: 8 device(s), train.strategy = fsdp" in res.output
    assert "gathered unit (fsdp)" in res.output


def test_a_batch_schedulers_sigterm_stops_both_ranks_at_one_saved_step(tmp_path):
    # torchrun passes SIGTERM on to every process: each finishes its step, the ranks save one
    # checkpoint together, say so, and exit; the run resumes from it on one process
    from difftk.run.checkpoint import load_checkpoint

    command, env = _torchrun_command(tmp_path, "sig", "train.steps=100000")
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = tmp_path / "sig" / "checkpoints" / "00000003"  # log.checkpoint_every = 3
    deadline = time.time() + 120
    while not first.is_dir() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode != 0
    said = {rank: re.search(rf"rank {rank} of 2: interrupted by SIGTERM after step (\d+); (.*?);",
                            err) for rank in (0, 1)}
    assert said[0] and said[1], err
    step = int(said[0].group(1))
    assert int(said[1].group(1)) == step >= 3
    assert said[0].group(2).startswith("saved checkpoint ")
    assert said[1].group(2) == "rank 0 saved the checkpoint"
    assert load_checkpoint(tmp_path / "sig" / "checkpoints" / "latest").step == step
    trainer = _in_process(tmp_path, "sig", f"train.steps={step + 2}", resume=True)
    assert trainer.step == step + 2


def test_a_failing_rank_zero_keeps_what_it_logged(tmp_path):
    # rank 0 ends without Python's shutdown (Runtime.exit_process): its TensorBoard events
    # must be on disk first, every step before the failure
    script = tmp_path / "failing.py"
    script.write_text(FAILING.replace('os.environ["RANK"] == "1" and self.step == 2',
                                      'os.environ["RANK"] == "0" and self.step == 4'))
    res = _torchrun(tmp_path, "fail0", "train.steps=50", script=script)
    assert res.returncode != 0
    assert "error: rank 0 of 2: the disk of this node is full" in res.stderr
    assert sorted(_losses(tmp_path / "fail0")) == [1, 2, 3, 4]
    # the loggers were closed before the exit: TensorBoard's hparams record is written then
    from test_loggers import _hparams

    hparams, metrics = _hparams(tmp_path / "fail0")
    assert hparams and "loss/train" in metrics


def test_a_rank_killed_by_sigkill_leaves_the_other_a_sentence_not_a_traceback(tmp_path):
    from test_run_lock import wait_for_lock

    command, env = _torchrun_command(tmp_path, "killed", "train.steps=100000")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env, start_new_session=True)
    lock = tmp_path / "killed" / "train.lock"
    deadline = time.time() + 120
    while time.time() < deadline and not (lock.is_file() and lock.read_text().strip()):
        time.sleep(0.2)
    rank0 = json.loads(lock.read_text())["pid"]
    wait_for_lock(lock, rank0)
    time.sleep(2.0)  # both ranks in their steps
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                              text=True).stdout.split()
    other = next(int(p) for p in children if int(p) != rank0)
    os.kill(other, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith(("[rank0]", "error:"))]
    assert any("another process of the group ended" in line for line in ours), err[-3000:]
    assert not any("Traceback" in line for line in ours), err[-3000:]


def test_a_loss_aware_distribution_learns_the_same_history_on_two_processes(tmp_path):
    """Each process is told the global batch's losses in batch order, so two processes draw
    the levels one process draws, step after step, and save the same loss history."""
    extra = ['noise_sampling.name="loss_second_moment"', "noise_sampling.buckets=4",
             "noise_sampling.history=2", "train.steps=4", "log.val_every=0"]
    two = _torchrun(tmp_path, "two", *extra)
    assert two.returncode == 0, two.stderr
    _in_process(tmp_path, "one", *extra)
    one_losses, two_losses = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert sorted(one_losses) == sorted(two_losses) == [1, 2, 3, 4]
    for step, loss in two_losses.items():
        assert loss == pytest.approx(one_losses[step], rel=RTOL), step
    for step in (3, 4):
        ck = f"checkpoints/{step:08d}/noise_history.safetensors"
        a, b = load_file(str(tmp_path / "one" / ck)), load_file(str(tmp_path / "two" / ck))
        assert torch.equal(a["counts"], b["counts"]) and int(a["counts"].sum()) == 8
        torch.testing.assert_close(b["losses"], a["losses"], rtol=RTOL, atol=ATOL)
