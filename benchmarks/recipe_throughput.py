"""Training images/s of several variants of one recipe, measured interleaved in one process.

    python benchmarks/recipe_throughput.py RECIPE.toml NAME='--set a=1 --set b=2' ... \
        [--steps 20] [--warmup 3] [--threads 2]

Each variant is the recipe with its overrides, built as the trainer builds it
(bench/difftk_loop.py) on the recipe's own data set in its [latents]; their steps are taken in turn
(A, B, C, A, ...) so a loaded machine slows every variant alike, and the medians of the
per-step times give images/s. What a budget buys: steps = images/s x seconds / batch.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics

import torch

from difftk.bench.difftk_loop import DifftkLoop
from difftk.bench.interleave import interleaved_step_times
from difftk.recipe import load_recipe
from difftk.run.training_data import training_data


class Variant(DifftkLoop):
    def __init__(self, name, recipe, data):
        super().__init__(recipe, data, torch.device("cpu"), recipe.train.batch_size)
        self.name = name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe")
    ap.add_argument("variants", nargs="+", help="NAME='--set section.field=value ...'")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    subjects = []
    pixels = None
    for spec in args.variants:
        name, _, sets = spec.partition("=")
        overrides = [s for s in shlex.split(sets) if s != "--set"]
        recipe = load_recipe(args.recipe, overrides, warn=False)
        pixels = recipe.parts["data"].load() if pixels is None else pixels
        # each variant on the space it diffuses in (its [latents] may differ)
        trained_on = training_data(recipe, torch.device("cpu"), pixels)
        subjects.append(Variant(name, trained_on.recipe, trained_on.data))
    times = interleaved_step_times(subjects, args.steps, args.warmup)
    rows = []
    for s in subjects:
        median = statistics.median(times[s.name])
        params = sum(p.numel() for p in s.model.parameters())
        rows.append({"variant": s.name, "params": params, "batch": s.batch,
                     "step_s": round(median, 4), "images_per_s": round(s.batch / median, 1),
                     "steps_per_10min": int(600 / median)})
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
