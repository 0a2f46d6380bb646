"""Training speed of every shipped recipe on this machine, and what its train.steps cost.

    python benchmarks/recipe_times.py [RECIPE.toml ...] [--steps 5] [--warmup 2] [--threads 2]
        [--json OUT.json]

With no recipe given, every recipe under recipes/ is timed. Each one's training step is
built as the trainer builds it (bench/difftk_loop.py, as benchmarks/recipe_throughput.py
does) on the recipe's own data set, on the CPU with the recipe's own precision (fp32 there),
and the median of ``--steps`` timed steps after ``--warmup`` gives images/s. Estimated time
for the recipe = train.steps x seconds per step, capped by train.time_limit where the recipe
sets one; it leaves out start-up, validation, sample grids and checkpoints.
Where the recipe's data set is not on this machine (CIFAR-10), random data of its shape
stands in (bench/run.py's random_data); the table says so. The autoencoder recipes
(an [autoencoder] section, trained by `difftk train-autoencoder`) are not diffusion training
steps and are listed as skipped, as is any recipe whose parts cannot be built here (a latent
recipe whose autoencoder was not trained yet). A latent recipe is timed on its latents (the
data set encoded once, as `difftk train` does), so the encoder is not in its step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tomllib
from pathlib import Path

import torch

from difftk.bench.difftk_loop import DifftkLoop
from difftk.bench.interleave import interleaved_step_times
from difftk.bench.run import random_data
from difftk.errors import DifftkError
from difftk.recipe import load_recipe
from difftk.run.training_data import training_data

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
# data sets that are downloads rather than files on the machine, and their image shapes
RANDOM_STAND_INS = {"cifar10": ((3, 32, 32), 10)}


def clock(seconds: float) -> str:
    """h:mm:ss, the form the trainer's ETA uses."""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def recipe_data(recipe):
    """The recipe's own data set (encoded into its [latents], as `difftk train` trains on
    them), or random data of its shape where it is not on the machine."""
    data_part = recipe.parts["data"]
    try:
        return training_data(recipe, torch.device("cpu")).data, ""
    except (DifftkError, OSError) as e:
        if data_part.name not in RANDOM_STAND_INS:
            raise
        shape, classes = RANDOM_STAND_INS[data_part.name]
        n = max(4 * recipe.train.batch_size, 256)
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        return random_data(shape, classes, n), f"random data {list(shape)} ({reason})"


def time_recipe(path: Path, steps: int, warmup: int) -> dict:
    row: dict = {"recipe": str(path.relative_to(RECIPES.parent) if path.is_relative_to(
        RECIPES.parent) else path)}
    if "autoencoder" in tomllib.loads(path.read_text()):
        return {**row, "skipped": "autoencoder recipe (difftk train-autoencoder)"}
    try:
        recipe = load_recipe(str(path), [], warn=False)
        data, note = recipe_data(recipe)
        loop = DifftkLoop(recipe, data, torch.device("cpu"), recipe.train.batch_size)
        loop.name = row["recipe"]
        step_s = statistics.median(interleaved_step_times([loop], steps, warmup)[loop.name])
    except (DifftkError, OSError) as e:  # parts this machine cannot build, data it lacks
        return {**row, "skipped": (str(e).splitlines() or [type(e).__name__])[0]}
    t = recipe.train
    total_s = t.steps * step_s
    limit_s = t.time_limit * 60 if getattr(t, "time_limit", None) else None
    capped = limit_s is not None and limit_s < total_s
    return {**row, "params": sum(p.numel() for p in loop.model.parameters()),
            "batch": loop.batch, "step_s": round(step_s, 4),
            "images_per_s": round(loop.batch / step_s, 1),
            "s_per_1000_steps": round(1000 * step_s, 1), "train_steps": t.steps,
            "estimated_s": round(limit_s if capped else total_s),
            "time_limit_min": t.time_limit if capped else None, "data_note": note}


def markdown(rows: list[dict], threads: int) -> str:
    lines = [f"Measured on {threads} CPU threads, fp32; time = train.steps x median step "
             "(start-up, validation, grids and checkpoints left out).", "",
             "| recipe | parameters | images/s | s / 1,000 steps | train.steps | "
             "estimated time |", "|---|---:|---:|---:|---:|---:|"]
    notes = []
    for r in rows:
        if "skipped" in r:
            lines.append(f"| `{r['recipe']}` | | | | | skipped: {r['skipped']} |")
            continue
        estimate = clock(r["estimated_s"])
        if r["time_limit_min"]:
            estimate += f" (time_limit {r['time_limit_min']:g} min)"
        name = f"`{r['recipe']}`" + (" *" if r["data_note"] else "")
        lines.append(f"| {name} | {r['params']:,} | {r['images_per_s']:,.1f} | "
                     f"{r['s_per_1000_steps']:,.1f} | {r['train_steps']:,} | {estimate} |")
        if r["data_note"]:
            notes.append(f"* `{r['recipe']}`: {r['data_note']}")
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="*", help="recipe files (default: every one in recipes/)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", metavar="OUT", help="also write the rows as JSON to OUT")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = [Path(p).resolve() for p in args.recipes] or sorted(RECIPES.rglob("*.toml"))
    rows = []
    for path in paths:
        rows.append(time_recipe(path, args.steps, args.warmup))
        print(f"timed {rows[-1]['recipe']}", file=sys.stderr)
    print(markdown(rows, args.threads))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
