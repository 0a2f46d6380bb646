"""Train recipes and measure what seed 003's tables report: loss, mean MSE, NLL (bits/dim).

    python benchmarks/measure_recipes.py OUT_DIR RECIPE.toml [--heldout N] [--set section.field=value ...]

Trains the recipe, then scores the EMA model on the held-out split (its first N items with
--heldout: the bound costs T network calls per item) with difftk.eval.nll.nll_bits_per_dim
and writes OUT_DIR/<run name>.json and the final sample grid.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch

from difftk.eval.nll import nll_bits_per_dim
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer


def main(out_dir: str, recipe_path: str, *overrides: str) -> dict:
    args = list(overrides)
    heldout = None
    if "--heldout" in args:
        i = args.index("--heldout")
        heldout = int(args[i + 1])
        del args[i:i + 2]
    sets = [o for o in args if o != "--set"]
    recipe = load_recipe(recipe_path, sets, warn=False)
    trainer = Trainer(recipe, make_runtime(recipe.run.device), progress=False)
    t0 = time.perf_counter()
    grid = trainer.fit()
    train_s = time.perf_counter() - t0
    gen = torch.Generator(trainer.device).manual_seed(0)
    x = trainer.data.heldout[:heldout].to(trainer.device)
    scores = nll_bits_per_dim(trainer.ema.module.eval(), x, batch_size=512, generator=gen)
    result = {"recipe": recipe_path, "run": recipe.run.name, "steps": trainer.step,
              "train_seconds": round(train_s, 1), "nll_items": x.shape[0],
              "heldout_loss": trainer.monitor.validation_loss(),
              **scores}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{recipe.run.name}.json").write_text(json.dumps(result, indent=1))
    shutil.copy(grid, out / f"{recipe.run.name}.png")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(*sys.argv[1:])
