"""Share of a training step spent waiting for data, per data set and input pipeline.

    python benchmarks/data_wait.py [--steps 20] [--threads 2]

Builds the trainer of each recipe (the small U-Nets of recipes/edm.toml and
recipes/fashion_mnist/edm.toml), then times, per optimizer step, the wait for the next
batch (``batches.next()``) and the whole step (wait + forward + backward + optimizer +
EMA). Reports medians and the share of the total time spent waiting. On CPU nothing runs
asynchronously, so wall-clock timing of each call is exact. The packed case packs
Fashion-MNIST first (`difftk data pack` of the recipe) and trains on the shards lazily.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
CASES = [
    ("digits, in memory", "recipes/edm.toml", []),
    ("fashion_mnist, in memory", "recipes/fashion_mnist/edm.toml", []),
    ("fashion_mnist, DataLoader (2 workers)", "recipes/fashion_mnist/edm.toml",
     ['data.pipeline="loader"', "data.workers=2"]),
    # the lazy path: packed uint8 shards read by the workers, scaled per batch
    ("fashion_mnist, packed shards (2 workers)", "recipes/fashion_mnist/edm.toml",
     ['data.name="packed"', 'data.path="{pack}"', 'data.pipeline="loader"', "data.workers=2"]),
]


def measure(recipe: str, sets: list[str], steps: int, warmup: int, out: str) -> dict:
    r = load_recipe(ROOT / recipe, [*sets, f'run.out_dir="{out}"', f'run.name="bench{len(sets)}"',
                                    "log.tensorboard=false"], warn=False)
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    waits, totals = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        x0, labels = trainer.batches.next()
        t1 = time.perf_counter()
        trainer.train_step(x0, labels)
        t2 = time.perf_counter()
        if i >= warmup:
            waits.append(t1 - t0)
            totals.append(t2 - t0)
    trainer.batches.close()
    return {"batch": r.train.batch_size, "wait_ms": 1e3 * statistics.median(waits),
            "step_ms": 1e3 * statistics.median(totals), "share": sum(waits) / sum(totals),
            "max_wait_ms": 1e3 * max(waits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.steps} timed steps "
          f"after {args.warmup} warm-up steps")
    print(f"{'data / pipeline':40s} {'batch':>5s} {'wait (median)':>14s} {'step (median)':>14s} "
          f"{'wait share':>10s} {'max wait':>9s}")
    with tempfile.TemporaryDirectory() as out:
        pack = Path(out) / "fashion_mnist_packed"
        subprocess.run([sys.executable, "-m", "difftk", "data", "pack",
                        str(ROOT / "recipes/fashion_mnist/edm.toml"), "-o", str(pack)],
                       check=True, capture_output=True)
        for label, recipe, sets in CASES:
            sets = [s.replace("{pack}", str(pack)) for s in sets]
            m = measure(recipe, sets, args.steps, args.warmup, out)
            print(f"{label:40s} {m['batch']:5d} {m['wait_ms']:11.3f} ms {m['step_ms']:11.1f} ms "
                  f"{100 * m['share']:9.3f}% {m['max_wait_ms']:6.2f} ms")


if __name__ == "__main__":
    main()
