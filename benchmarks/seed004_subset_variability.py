"""Seed 004 Coding I.6: how much the training loss varies across 20 disjoint data subsets,
with the summed-over-pixels mean-matching loss (a) and its per-pixel mean (b).

    python benchmarks/seed004_subset_variability.py OUT [--epochs 2] [--subsets 20]
        [--subset-size 1000] [--decay-every 20] [--b-continues-a] [--set SECTION.FIELD=VALUE ...]

Each epoch trains over the subsets in turn (batch 100, shuffled within a subset) and records
each subset's mean training loss (seed 004, In [8]-[12]). Both variants start from the same
initial weights and see the same batches, noise levels and noise (the step's draws are seeded
by the step number), so they differ only in loss.reduction. ``--b-continues-a`` instead
trains (b) on from (a)'s final weights, optimizer state and lr schedule, as the seed's
notebook does (In [11] reuses score_net, opt and scheduler).

Writes OUT/subset_losses.csv (epoch, subset, loss, variant), OUT/summary.json (the seed's
line per variant: min, 25%, median, 75%, max over every (epoch, subset), and avg_var, the
across-subset variance averaged over epochs) and OUT/subset_variability.png (the seed's two
panels: mean loss and std across subsets per epoch, both variants, log scale).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import seed004_training as seed
import torch

VARIANTS = ("sum", "mean")  # (a) the seed's original loss, (b) its reduced-variance loss


def draw_subsets(train: torch.Tensor, count: int, size: int, seed_: int) -> list[torch.Tensor]:
    """``count`` disjoint random subsets of ``size`` training images (In [8])."""
    if count * size > train.shape[0]:
        seed.fail(f"{count} subsets of {size} images need {count * size} training images "
                  f"and the data set has {train.shape[0]}")
    perm = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed_))
    return [train[perm[i * size:(i + 1) * size]] for i in range(count)]


def train_variant(trainer, subsets, epochs: int, seed_: int) -> list[list[float]]:
    """[epoch][subset] mean training loss. The batch order and the loss's posterior draws
    restart from ``seed_``, so every variant sees the same batches and noise."""
    torch.manual_seed(seed_)
    order = torch.Generator().manual_seed(seed_ + 1)
    history = []
    for _ in range(epochs):
        history.append([seed.train_pass(trainer, images, order) for images in subsets])
    return history


def summary(history: list[list[float]]) -> dict[str, float]:
    """The seed's printed line (In [10], [12]): quantiles of every loss, and avg_var = the
    variance across subsets (np.var, ddof 0) averaged over the epochs."""
    arr = np.asarray(history, dtype=np.float64)
    return {**seed.quantiles(arr.ravel()), "avg_var": float(arr.var(axis=1).mean())}


def seed_line(s: dict[str, float]) -> str:
    return (f"min={s['min']:.4f}, 25%={s['p25']:.4f}, median={s['median']:.4f}, "
            f"75%={s['p75']:.4f}, max={s['max']:.4f}, avg_var={s['avg_var']:.6f}")


def plot(histories: dict[str, list[list[float]]], pixels: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(12, 4))
    for variant, history in histories.items():
        arr = np.asarray(history)
        epochs = np.arange(1, arr.shape[0] + 1)
        label = {"sum": "(a) sum over pixels", "mean": "(b) per-pixel mean"}[variant]
        axs[0].plot(epochs, arr.mean(1), marker="o", markersize=3, linewidth=1, label=label)
        axs[1].plot(epochs, arr.std(1), marker="o", markersize=3, linewidth=1, label=label)
        if variant == "sum":  # L_sum = d L_mean: divided by d it lies on (b) if only the scale differs
            for ax, curve in ((axs[0], arr.mean(1)), (axs[1], arr.std(1))):
                ax.plot(epochs, curve / pixels, "k--", marker="x", markersize=4, linewidth=0.8,
                        label=f"(a) / d, d={pixels}")
    for ax, ylabel, title in ((axs[0], "Mean Loss", "Mean Training Loss per Epoch"),
                              (axs[1], "Std Dev of Loss", "Loss Variability per Epoch")):
        ax.set(xlabel="Epoch", ylabel=ylabel, title=title, yscale="log")
        ax.grid(True)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = seed.settings_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subsets", type=int, default=20)
    parser.add_argument("--subset-size", type=int, default=1000)
    parser.add_argument("--decay-every", type=int, default=20,
                        help="StepLR: lr x 0.1 every this many epochs (the seed: 20)")
    parser.add_argument("--b-continues-a", action="store_true",
                        help="train (b) on from (a)'s weights, optimizer and schedule (the seed's notebook)")
    args = parser.parse_args(argv)
    if min(args.epochs, args.subsets, args.subset_size, args.decay_every) < 1:
        seed.fail("--epochs, --subsets, --subset-size and --decay-every must be at least 1")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    histories, seconds, trainers = {}, {}, {}
    start = None
    subsets: list[torch.Tensor] = []
    for variant in VARIANTS:
        trainer = seed.build_trainer(
            out, f"seed004-subsets-{variant}", args.seed, args.device,
            [f"loss.reduction={variant}"] + args.sets,
            lambda b: args.decay_every * args.subsets * (args.subset_size // b))
        b = seed.batch_size(trainer)
        if b > args.subset_size:
            seed.fail(f"train.batch_size {b} is larger than a subset ({args.subset_size} images)")
        if start is None:
            start = seed.initial_state(trainer)
            subsets = draw_subsets(trainer.data.train, args.subsets, args.subset_size, args.seed)
        elif args.b_continues_a:
            previous = trainers["sum"]
            trainer.model.load_state_dict(previous.model.state_dict())
            trainer.optimizer.load_state_dict(previous.optimizer.state_dict())
            trainer.step = previous.step
        else:
            trainer.model.load_state_dict(start)
        trainers[variant] = trainer
        t0 = time.perf_counter()
        histories[variant] = train_variant(trainer, subsets, args.epochs, args.seed)
        seconds[variant] = time.perf_counter() - t0

    with open(out / "subset_losses.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "subset", "loss", "variant"])
        for variant, history in histories.items():
            for epoch, losses in enumerate(history, start=1):
                for subset, loss in enumerate(losses):
                    writer.writerow([epoch, subset, f"{loss:.9g}", variant])

    pixels = int(np.prod(trainer.spec.shape))
    ratio = np.asarray(histories["sum"]) / np.asarray(histories["mean"])
    result = {
        "data": trainer.recipe.parts["data"].name, "pixels": pixels,
        "model": trainer.recipe.parts["model"].params(),
        "epochs": args.epochs, "subsets": args.subsets, "subset_size": args.subset_size,
        "batch_size": seed.batch_size(trainer), "decay_every_epochs": args.decay_every,
        "b_continues_a": args.b_continues_a,
        "variants": {v: {**summary(h), "train_seconds": round(seconds[v], 1)}
                     for v, h in histories.items()},
        # With the same draws, L_sum = d L_mean exactly at the first step; Adam's update is
        # invariant to the loss's scale (up to eps), so the ratio stays near d after it.
        "sum_over_mean": seed.quantiles(ratio.ravel()),
    }
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    plot(histories, pixels, out / "subset_variability.png")
    for variant in VARIANTS:
        print(f"({'a' if variant == 'sum' else 'b'}) {variant:4s} {seed_line(result['variants'][variant])}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    seed.run_main(main)
