"""One writer per run directory: a second `difftk train` on the same run is refused."""

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from difftk.train.run_lock import LOCK_NAME, RunLock, RunLockedError

LONG = ["train.steps=1000000", "log.checkpoint_every=0", "log.val_every=0", "log.sample_every=0",
        "log.num_samples=4", "log.tensorboard=false", "sampler.steps=2", "model.width=16",
        "model.depth=1", "train.batch_size=32", "log.every=1000"]


def train_cmd(out, name, *extra):
    cmd = [sys.executable, "-m", "difftk.cli", "train", str(ROOT / "recipes/toy2d.toml"),
           "--no-progress"]
    for s in [*LONG, *extra, f'run.out_dir="{out}"', f'run.name="{name}"']:
        cmd += ["--set", s]
    return cmd


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT / "src"))


def wait_for_lock(lock, pid, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads(lock.read_text() or "{}").get("pid") == pid:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError("the first run never took the lock")


def test_second_train_on_the_same_run_is_refused_in_one_sentence(tmp_path):
    first = subprocess.Popen(train_cmd(tmp_path, "shared"), env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock(tmp_path / "shared" / LOCK_NAME, first.pid)
        second = subprocess.run(train_cmd(tmp_path, "shared"), env=env(), capture_output=True,
                                text=True, timeout=300)
        assert second.returncode == 1
        assert f"is in use by another difftk train (pid {first.pid} on host" in second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        assert first.poll() is None  # the first run goes on untouched
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=300)
    assert first.returncode == 128 + signal.SIGTERM, err
    assert "saved checkpoint" in err
    # after the first run ended, the run is free again
    with RunLock(tmp_path / "shared"):
        pass


def test_lock_is_exclusive_between_open_files(tmp_path):
    with RunLock(tmp_path / "r"):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
            RunLock(tmp_path / "r").acquire()
    RunLock(tmp_path / "r").acquire().release()  # released on exit


@pytest.fixture
def no_flock(monkeypatch):
    def refuse(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", refuse)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_without_flock_a_dead_holder_is_stale_and_a_live_one_is_refused(tmp_path, no_flock, capsys):
    run = tmp_path / "r"
    run.mkdir()
    host = socket.gethostname()
    (run / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": host}))
    with RunLock(run):
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert "taking over the stale lock" in capsys.readouterr().err
    (run / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": host}))
    with pytest.raises(RunLockedError, match=f"pid {os.getppid()} on host {host}"):
        RunLock(run).acquire()
    (run / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(RunLockedError, match="if that job is gone, delete"):
        RunLock(run).acquire()


@pytest.mark.parametrize("link", ["train.lock", "samples/final.png", "checkpoints"])
def test_a_link_out_of_the_run_directory_is_refused_and_its_target_untouched(tmp_path, link):
    from typer.testing import CliRunner

    from difftk.cli import app

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "runs" / "r"
    (run / link).parent.mkdir(parents=True, exist_ok=True)
    (run / link).symlink_to(victim if link != "checkpoints" else tmp_path)
    res = CliRunner().invoke(app, ["train", str(ROOT / "recipes/toy2d.toml"), "--no-progress",
                                   "--set", f'run.out_dir="{tmp_path / "runs"}"', "--set",
                                   'run.name="r"', "--set", "train.steps=1"])
    assert res.exit_code != 0 and "symbolic link" in res.output, res.output
    assert "Traceback" not in res.output
    assert victim.read_text() == "precious"
