"""The learning rate a recipe trains with, step by step: optimizer.lr x the [lr_schedule] factor.

Evaluated exactly as the trainer does (difftk.optim.lr_schedule.TrainingClock for the
optimizer step k: k - 1 steps and (k - 1) x train.batch_size images done), so the figure is
the run's curve, not a sketch of it. Parameter groups with their own multiplier (seed
004's rho0, rho1) scale this curve; the NaN guard lowers it after a restore.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difftk.eval.figures import figure_to_image
from difftk.optim.lr_schedule import TrainingClock


@dataclass
class LrCurve:
    schedule: str  # "cosine(warmup_steps=500, ...)", for the title
    batch_size: int
    step: np.ndarray  # 1-based optimizer step
    lr: np.ndarray


def lr_curve(recipe, max_points: int = 4000) -> LrCurve:
    """lr at the steps 1..train.steps, every ceil(steps / max_points)-th step (first and last
    always included)."""
    steps, batch = recipe.train.steps, recipe.train.batch_size
    schedule, peak = recipe.parts["lr_schedule"], recipe.parts["optimizer"].lr
    stride = max(1, -(-steps // max_points))
    ks = np.unique(np.r_[np.arange(1, steps + 1, stride), steps])
    lr = np.array([peak * schedule.factor(TrainingClock(int(k) - 1, batch, steps)) for k in ks])
    params = ", ".join(f"{k}={v}" for k, v in schedule.params().items() if v is not None)
    return LrCurve(f"{schedule.name}({params})", batch, ks, lr)


def write_csv(curve: LrCurve, path: str | Path) -> None:
    """One row per step: step, kimg seen before it, lr."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["step", "kimg", "lr"])
        for k, lr in zip(curve.step, curve.lr, strict=True):
            out.writerow([int(k), (int(k) - 1) * curve.batch_size / 1000, repr(float(lr))])


def draw_lr_schedule(curve: LrCurve):
    """lr against optimizer step, with the images seen (kimg) on the top axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(curve.step, curve.lr, color="C0")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_ylim(bottom=0)
    ax.set_title(curve.schedule, fontsize=9)
    ax.grid(alpha=0.3)
    kimg = curve.batch_size / 1000
    top = ax.secondary_xaxis("top", functions=(lambda s: (s - 1) * kimg,
                                               lambda i: i / kimg + 1))
    top.set_xlabel(f"kimg seen (batch {curve.batch_size})")
    fig.tight_layout()
    return figure_to_image(fig)
