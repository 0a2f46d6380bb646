"""Seed 004 Coding I's training setup, built from difftk's own recipe, Trainer and step.

Shared by benchmarks/seed004_subset_variability.py (Coding I.6) and
benchmarks/seed004_width_study.py (Coding I.7). The seed's notebook (seed 004, In [8]-[14]):
ScoreNet with the learned output map mu = rho0 (x - rho1 delta), linear betas 1e-4..0.1 over
T = 200, mean matching ||x_{t-1} - mu||^2 / (2 (1 - alpha_t)), Adam at lr 0.01 with rho0, rho1
at 0.2, StepLR (x0.1 every 20 or 30 epochs), batch 100, no clipping, no EMA. These are --set
overrides of recipes/final_project/01_mean_matching.toml; the loss, the network, the
schedule and the optimisation step are difftk's (Trainer.train_step), only the loop over
subsets and epochs is the script's.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

from difftk.errors import DifftkError
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

BASE_RECIPE = Path(__file__).resolve().parent.parent / "recipes/final_project/01_mean_matching.toml"
SEED_BATCH = 100

# Seed 004 Coding I (In [8], [9], [13]); what the seed does not fix is difftk's recipe default.
SEED_SETTINGS = [
    "data.name=fashion_mnist",  # the seed used MNIST; Fashion-MNIST is the packaged stand-in
    "data.mean=[0.0]", "data.std=[1.0]",  # pixels in [0, 1], as the seed's data / 255
    "model.name=scorenet", "model.preset=small",
    "model.mean_scaling=true",  # Coding I.2: mu = rho0 (x - rho1 delta)
    "model.rho_lr_multiplier=20",  # rho0, rho1 at 0.2 beside 0.01
    "optimizer.name=adam", "optimizer.lr=0.01",
    "lr_schedule.name=step", "lr_schedule.gamma=0.1",
    "clipping.name=none", "ema.name=none",
    f"train.batch_size={SEED_BATCH}",
    "loss.name=mean_matching", "loss.estimator=sample",
]


def settings_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", type=Path, help="output directory (CSV, JSON, PNG)")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        metavar="SECTION.FIELD=VALUE",
                        help="recipe override after the seed's settings (e.g. model.preset=medium)")
    parser.add_argument("--seed", type=int, default=0, help="run.seed: weights, batches, noise")
    parser.add_argument("--device", default="cpu", help='"cpu", "cuda" or "auto"')
    return parser


def build_trainer(out: Path, name: str, seed: int, device: str, extra: list[str],
                  steps_per_decay) -> Trainer:
    """A Trainer on the seed's settings; ``extra`` (variant settings, then the user's --set)
    wins over them. ``steps_per_decay(batch_size)``: StepLR's step_size in optimizer steps
    (the seed counts it in epochs, whose length depends on the batch size)."""
    sets = SEED_SETTINGS + [f'run.out_dir="{out / "runs"}"', f'run.name="{name}"',
                            f"run.seed={seed}"] + extra
    batch = load_recipe(BASE_RECIPE, sets, warn=False).train.batch_size
    step_size = max(1, int(steps_per_decay(batch)))
    recipe = load_recipe(BASE_RECIPE, sets + [f"lr_schedule.step_size={step_size}"], warn=False)
    return Trainer(recipe, make_runtime(device), progress=False)


def initial_state(trainer: Trainer) -> dict:
    """A copy of the network's weights, to start another variant from the same point."""
    return copy.deepcopy(trainer.model.state_dict())


def batch_size(trainer: Trainer) -> int:
    return trainer.recipe.train.batch_size


def train_pass(trainer: Trainer, images: torch.Tensor, generator: torch.Generator) -> float:
    """One pass over ``images`` in shuffled batches (the last partial batch dropped, as the
    seed's DataLoader(drop_last=True)): the mean of the batches' training losses."""
    b = batch_size(trainer)
    order = torch.randperm(images.shape[0], generator=generator)
    losses = []
    for first in range(0, images.shape[0] - b + 1, b):
        x0 = images[order[first:first + b]].to(trainer.device)
        result = trainer.train_step(x0, None)
        losses.append(result.per_sample.mean())
    return float(torch.stack(losses).mean())


@torch.no_grad()
def validation_loss(trainer: Trainer, items: int, seed: int) -> float:
    """The training objective on the first ``items`` held-out images (the raw weights),
    with the same draws at every call; the training's random streams are left untouched."""
    with torch.random.fork_rng(devices=[trainer.device] if trainer.device.type == "cuda" else []):
        torch.manual_seed(seed)  # the posterior draw x_{t-1} uses the global stream
        return trainer.monitor.validation_loss(max_items=items)


def quantiles(values) -> dict[str, float]:
    """min, 25%, median, 75%, max: the seed's printed line (np.percentile, In [10], [15])."""
    q = np.percentile(np.asarray(values, dtype=np.float64), [0, 25, 50, 75, 100])
    return dict(zip(("min", "p25", "median", "p75", "max"), map(float, q), strict=True))


def fail(message: str, code: int = 2) -> None:
    """Bad input: one sentence on stderr and a non-zero exit, as difftk's CLI does."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_main(main, argv=None) -> None:
    """Run ``main`` with difftk's errors (bad recipe settings, missing data) as one sentence."""
    try:
        main(argv)
    except DifftkError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
