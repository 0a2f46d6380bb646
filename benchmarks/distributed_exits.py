"""How often a finished 2-process run exits cleanly: N two-process gloo runs on the CPU
(FSDP resuming a DDP checkpoint, as tests/test_distributed.py does), with a busy process
beside them, counting exit codes other than 0.

    PYTHONPATH=src python benchmarks/distributed_exits.py [--runs 40] [--strategy fsdp]
        [--no-load] [--out DIR]

Measured on 2 cores with the busy process: before a torchrun'd run ended with os._exit
(Runtime.exit_process), 5 of 30 runs aborted at interpreter shutdown ("terminate called
without an active exception"); after, 0 of 30.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from test_distributed import _torchrun  # noqa: E402

BUSY = "import torch\ntorch.set_num_threads(1)\nx = torch.randn(800, 800)\nwhile True:\n    x @ x\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--strategy", choices=("ddp", "fsdp"), default="fsdp")
    ap.add_argument("--no-load", action="store_true", help="no busy process beside the runs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="difftk-exits-"))
    base = out / "base"
    base.mkdir(parents=True, exist_ok=True)
    first = _torchrun(base, "two", "train.steps=3")
    if first.returncode:
        sys.exit(f"the 3-step starting run failed:\n{first.stderr}")
    busy = None if args.no_load else subprocess.Popen([sys.executable, "-c", BUSY])
    failed = []
    try:
        for i in range(args.runs):
            run = out / f"r{i}"
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(base / "two", run / "two", symlinks=True)
            t = time.perf_counter()
            res = _torchrun(run, "two", "train.steps=6", f'train.strategy="{args.strategy}"',
                            resume=True)
            print(f"run {i}: exit {res.returncode} in {time.perf_counter() - t:.1f}s", flush=True)
            if res.returncode:
                failed.append(i)
                (run / "stderr.txt").write_text(res.stderr)
    finally:
        if busy is not None:
            busy.kill()
    print(f"{len(failed)} of {args.runs} runs exited non-zero {failed} (stderr in {out}/rN)")


if __name__ == "__main__":
    main()
