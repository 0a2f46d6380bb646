"""Kill `difftk train` at chosen points, including inside checkpoint writes.

A "zygote" process imports difftk and torch once (without running any torch op), then
forks one child per request, so each killed or resumed run costs no interpreter start.
A request is one JSON line on stdin:

    {"args": [...difftk arguments...], "log": PATH, "kill_op": K, "torn": bool,
     "kill_step": S, "count": PATH}

``kill_op = K`` sends SIGKILL to the child just before its K-th file-system step in
difftk.run.durable_files (writes, fsyncs, renames, removals, links; counted from 1);
with ``torn`` a file write at that point is cut in half first. ``kill_step = S`` kills
it right after training step S. ``count`` receives how many steps the child made. The
answer is one JSON line: {"rc": exit status, "killed": bool}.

Used by tests/test_crash_consistency.py and benchmarks/crash_campaign.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

STEPS = ("write_file", "fsync", "rename", "remove_tree", "symlink", "exchange")


def _install_kill_points(kill_op: int | None, torn: bool, kill_step: int | None) -> list[int]:
    """Wrap the checkpoint writer's file-system steps (and Trainer.train_step) so that the
    chosen one kills the process; returns the live count of steps made."""
    from difftk.run import durable_files
    from difftk.train.trainer import Trainer

    made = [0]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(name, original):
        def step(*args, **kwargs):
            made[0] += 1
            if made[0] == kill_op:
                if torn and name == "write_file":
                    path, data = args
                    with open(path, "xb") as handle:
                        handle.write(data[: len(data) // 2])
                die()
            return original(*args, **kwargs)
        return step

    for name in STEPS:
        setattr(durable_files, name, wrap(name, getattr(durable_files, name)))
    if kill_step is not None:
        original_step = Trainer.train_step

        def train_step(self, *args, **kwargs):
            out = original_step(self, *args, **kwargs)
            if self.step == kill_step:
                die()
            return out
        Trainer.train_step = train_step
    return made


def _child(request: dict) -> int:
    fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    made = _install_kill_points(request.get("kill_op"), request.get("torn", False),
                                request.get("kill_step"))
    from difftk.cli import app

    code = 0
    try:
        app(args=request["args"], prog_name="difftk")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    if request.get("count"):
        Path(request["count"]).write_text(str(made[0]))
    return code


def serve() -> None:
    # Import once, before forking, what a run would import lazily (no torch op runs here,
    # so no thread pool exists to be copied into the children).
    import matplotlib.pyplot  # noqa: F401
    import torch._dynamo  # noqa: F401  (torch.optim imports it on first use)

    import difftk.analysis.run_figures  # noqa: F401
    import difftk.cli  # noqa: F401
    import difftk.eval.figures  # noqa: F401
    import difftk.train.session  # noqa: F401
    import difftk.train.trainer  # noqa: F401

    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(request)
            finally:
                os._exit(code)  # no atexit handlers of the parent in the child
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        rc = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
        print(json.dumps({"rc": rc, "killed": killed}), flush=True)


class Zygote:
    """The parent's handle on a serving harness process."""

    def __init__(self, src: Path):
        env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.proc = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def run(self, args: list[str], log: Path, **kill) -> dict:
        self.proc.stdin.write(json.dumps({"args": args, "log": str(log), **kill}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def final_tensors(run_dir: Path) -> dict:
    """model, ema and optimizer of a run's latest checkpoint, verified."""
    from difftk.run.checkpoint import load_checkpoint

    ck = load_checkpoint(run_dir / "checkpoints" / "latest", groups=("model", "ema", "optimizer"))
    return {"step": ck.step, **ck.tensors}


def identical(a: dict, b: dict) -> bool:
    import torch

    if a["step"] != b["step"]:
        return False
    for group in ("model", "ema", "optimizer"):
        if a[group].keys() != b[group].keys():
            return False
        if not all(torch.equal(a[group][k], b[group][k]) for k in a[group]):
            return False
    return True


if __name__ == "__main__":
    serve()
