"""SIGINT, SIGTERM and SIGHUP: finish the step, save a checkpoint, exit non-zero saying how to
resume; a second signal exits at once. Real signals to real processes."""

import signal
import subprocess
import sys
import time

import pytest
from test_run_lock import env, train_cmd, wait_for_lock

from difftk.run.checkpoint import load_checkpoint
from difftk.train.run_lock import LOCK_NAME


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_saves_a_checkpoint_and_says_how_to_resume(tmp_path, sig):
    proc = subprocess.Popen(train_cmd(tmp_path, "run"), env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_lock(tmp_path / "run" / LOCK_NAME, proc.pid)
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig
    assert f"interrupted by {sig.name} after step" in err
    assert "run the same command with --resume" in err and "Traceback" not in err
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "latest")  # verified
    assert ck.step >= 1 and f"step {ck.step};" in err


SLEEPER = """
import time
from difftk.train.interrupt import graceful_interrupts
with graceful_interrupts():
    print("ready", flush=True)
    time.sleep(120)
"""


def test_second_signal_exits_at_once(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER], env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert proc.poll() is None  # the first one only asks the loop to stop
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "second SIGTERM: exiting at once without saving" in err


def test_resume_equals_auto_is_resume_or_start(tmp_path, root):
    """A requeued job's one command line, in the spelling --resume=auto: it starts the run
    the first time and continues it the next."""
    def run(steps):
        cmd = [sys.executable, "-m", "difftk.cli", "train", str(root / "recipes/toy2d.toml"),
               "--resume=auto", "--no-progress"]
        for s in [f"train.steps={steps}", "model.width=16", "model.depth=1",
                  "train.batch_size=16", "log.val_every=0", "log.checkpoint_every=0",
                  "log.num_samples=4", "sampler.steps=2", "log.tensorboard=false",
                  f'run.out_dir="{tmp_path}"', 'run.name="requeued"']:
            cmd += ["--set", s]
        out = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return load_checkpoint(tmp_path / "requeued" / "checkpoints" / "latest").step

    assert run(2) == 2
    assert run(4) == 4


PHASES = """
import sys, time
from difftk.train.interrupt import graceful_interrupts, phase_handlers
phase_handlers()
if sys.argv[1] == "after":
    with graceful_interrupts():
        pass
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("phase,words", [("before", "while starting"),
                                         ("after", "after the run finished")])
def test_a_signal_outside_the_steps_ends_with_a_sentence_naming_the_phase(phase, words):
    proc = subprocess.Popen([sys.executable, "-c", PHASES, phase], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert f"SIGTERM received {words}" in err and "Traceback" not in err
