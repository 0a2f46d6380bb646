"""Seed 004 Coding I.7: the ScoreNet width study (small / medium / large), per-pixel
mean-matching loss: training and validation loss per epoch, seconds per epoch.

    python benchmarks/seed004_width_study.py OUT [--epochs 2] [--train-items 2000]
        [--val-items 1000] [--decay-every 30] [--widths small medium large]
        [--set SECTION.FIELD=VALUE ...]

An "epoch" here is one pass over ``--train-items`` training images (the same images, in the
same shuffled order, for every width), so that it fits a CPU; the seed's epoch is 50,000
MNIST images. The validation loss is difftk's training objective on the first
``--val-items`` held-out images (Fashion-MNIST's test set) with the same draws at every
epoch; the seed drew fresh ones on 20,000 images. ``--widths`` takes ScoreNet presets or
NAME:C1,C2,C3,C4 for four channel counts of one's own.

Writes OUT/width_losses.csv (width, epoch, train_loss, val_loss, seconds, and the output
map's rho0, rho1 after the epoch: at the seed's rate for them, 20x the network's, the wider
networks drive rho0 to about 0 in their first epoch; docs/reproductions.md),
OUT/summary.json (per width: the seed's line of val-loss quantiles and variance, seconds
per epoch, parameters) and OUT/width_study.png (training and validation curves).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import seed004_training as seed
import torch

from difftk.plugins.architectures.scorenet import ScoreNet

VALIDATION_SEED = 7  # the posterior draws of the validation loss, the same every epoch


def width_settings(width: str) -> list[str]:
    """Recipe overrides for a preset name or NAME:C1,C2,C3,C4."""
    if ":" in width:
        _, channels = width.split(":", 1)
        return ["model.preset=none", f"model.channels=[{channels}]"]
    if width not in ScoreNet.PRESETS:
        seed.fail(f'--widths: "{width}" is neither a ScoreNet preset '
                  f'({", ".join(ScoreNet.PRESETS)}) nor NAME:C1,C2,C3,C4')
    return [f"model.preset={width}"]


def output_map(trainer) -> tuple[float, float]:
    """(rho0, rho1) of Coding I.2's output map mu = rho0 (x - rho1 delta); NaN without it."""
    net = trainer.model.net
    if not getattr(net, "mean_scaling", False):
        return float("nan"), float("nan")
    return float(net.rho0.detach()), float(net.rho1.detach())


def seed_line(name: str, s: dict[str, float]) -> str:
    return (f"{name:6s} | min={s['min']:.4f}, 25%={s['p25']:.4f}, median={s['median']:.4f}, "
            f"75%={s['p75']:.4f}, max={s['max']:.4f}, variance={s['variance']:.6f}")


def plot(rows: list[dict], path: Path, train_items: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(12, 5))
    for width in dict.fromkeys(r["width"] for r in rows):
        mine = [r for r in rows if r["width"] == width]
        epochs = [r["epoch"] for r in mine]
        axs[0].plot(epochs, [r["train_loss"] for r in mine], marker="o", markersize=3, label=width)
        axs[1].plot(epochs, [r["val_loss"] for r in mine], marker="o", markersize=3, label=width)
    for ax, title in ((axs[0], "Training Loss"), (axs[1], "Validation Loss")):
        ax.set(xlabel=f"Epoch ({train_items} training images)", ylabel="Loss", title=title)
        ax.grid(True)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = seed.settings_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-items", type=int, default=2000,
                        help="training images per epoch (the seed: 50,000)")
    parser.add_argument("--val-items", type=int, default=1000, help="held-out images scored")
    parser.add_argument("--decay-every", type=int, default=30,
                        help="StepLR: lr x 0.1 every this many epochs (the seed: 30)")
    parser.add_argument("--widths", nargs="+", default=["small", "medium", "large"])
    args = parser.parse_args(argv)
    if min(args.epochs, args.train_items, args.val_items, args.decay_every) < 1:
        seed.fail("--epochs, --train-items, --val-items and --decay-every must be at least 1")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    rows, summaries = [], {}
    for width in args.widths:
        name = width.split(":", 1)[0]
        trainer = seed.build_trainer(
            out, f"seed004-width-{name}", args.seed, args.device,
            ["loss.reduction=mean", *width_settings(width), *args.sets],
            lambda b: args.decay_every * (args.train_items // b))
        train = trainer.data.train
        b = seed.batch_size(trainer)
        if args.train_items > train.shape[0] or b > args.train_items:
            seed.fail(f"--train-items {args.train_items} must lie between train.batch_size "
                      f"({b}) and the training images ({train.shape[0]})")
        # The same training images and batch order for every width.
        images = train[torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(
            args.seed))[:args.train_items]]
        order = torch.Generator().manual_seed(args.seed + 1)
        torch.manual_seed(args.seed)
        val_items = min(args.val_items, trainer.data.heldout.shape[0])
        for epoch in range(1, args.epochs + 1):
            t0 = time.perf_counter()
            train_loss = seed.train_pass(trainer, images, order)
            seconds = time.perf_counter() - t0
            val_loss = seed.validation_loss(trainer, val_items, VALIDATION_SEED)
            rho0, rho1 = output_map(trainer)
            rows.append(dict(width=name, epoch=epoch, train_loss=train_loss, val_loss=val_loss,
                             seconds=seconds, rho0=rho0, rho1=rho1))
            print(f"{name} epoch {epoch}: train {train_loss:.4f}  val {val_loss:.4f}  "
                  f"{seconds:.1f} s  rho0 {rho0:.3f}  rho1 {rho1:.3f}", flush=True)
        val = np.asarray([r["val_loss"] for r in rows if r["width"] == name])
        summaries[name] = {
            **seed.quantiles(val), "variance": float(np.var(val)),  # ddof 0, as In [15]
            "seconds_per_epoch": float(np.mean([r["seconds"] for r in rows if r["width"] == name])),
            "channels": list(trainer.recipe.parts["model"].channels),
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
        }

    with open(out / "width_losses.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["width", "epoch", "train_loss", "val_loss", "seconds",
                                               "rho0", "rho1"])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in r.items()})
    result = {"data": trainer.recipe.parts["data"].name, "epochs": args.epochs,
              "epoch": f"{args.train_items} training images (the seed: 50,000)",
              "val_items": val_items, "batch_size": seed.batch_size(trainer),
              "decay_every_epochs": args.decay_every, "widths": summaries}
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    plot(rows, out / "width_study.png", args.train_items)
    for name, s in summaries.items():
        print(seed_line(name, s) + f", {s['seconds_per_epoch']:.1f} s/epoch")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    seed.run_main(main)
