"""The cost of DistributedDataParallel at world size 1: images/s with and without it.

    python benchmarks/ddp_overhead.py [RECIPE] [--steps 200] [--repeats 3] [--set k=v ...]

Trains the same recipe as one plain process (``python -m difftk train``: no process group,
no DDP) and under ``torchrun --standalone --nproc-per-node 1`` (a gloo or nccl group of one,
the network wrapped in DDP, every agreement an all-reduce), alternating the two ``--repeats``
times. Each run logs images/s every ``log.every`` steps; the first window (start-up,
allocation) is dropped and the median of the rest is the run's speed. Prints the medians
and the overhead (goal: under 2%).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def images_per_second(run_dir: Path) -> float:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    values = [e.value for e in acc.Scalars("images_per_second")][1:]
    return statistics.median(values)


def train(recipe: str, sets: list[str], out: Path, name: str, ddp: bool) -> float:
    args = []
    for s in [*sets, f'run.out_dir="{out}"', f'run.name="{name}"']:
        args += ["--set", s]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc-per-node", "1"] if ddp else [sys.executable])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)}
    env.setdefault("OMP_NUM_THREADS", str(os.cpu_count()))  # torchrun would set 1
    subprocess.run([*launcher, "-m", "difftk", "train", recipe, "--no-progress", *args],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return images_per_second(out / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recipe", nargs="?", default=str(ROOT / "recipes/edm.toml"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=20, help="log.every: steps per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    a = ap.parse_args()
    sets = [*a.sets, f"train.steps={a.steps}", f"log.every={a.every}", "log.val_every=0",
            "log.checkpoint_every=0", "log.sample_every=0", "log.eval_every=0",
            "log.num_samples=4", "sampler.steps=2"]
    speeds: dict[str, list[float]] = {"plain": [], "ddp": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.repeats):
            for kind in ("plain", "ddp"):
                speeds[kind].append(train(a.recipe, sets, Path(tmp), f"{kind}{i}", kind == "ddp"))
    plain, ddp = statistics.median(speeds["plain"]), statistics.median(speeds["ddp"])
    print(f"{a.recipe}: {a.steps} steps x {a.repeats} runs each")
    print(f"  one process, no DDP:   {plain:10.1f} images/s  {speeds['plain']}")
    print(f"  torchrun, DDP, world 1:{ddp:10.1f} images/s  {speeds['ddp']}")
    print(f"  DDP overhead: {100 * (plain - ddp) / plain:+.2f}%")


if __name__ == "__main__":
    main()
