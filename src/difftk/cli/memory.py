"""difftk memory: the training-memory budget of a recipe (seed 001 §12.5), with a measured peak."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption


def _mb(n: float) -> str:
    return f"{n / 2**20:10.2f} MiB"


def memory(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe, e.g. recipes/edm.toml")],
    set_: SetOption = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Batch size to measure at (default: the recipe's train.batch_size).")] = None,
    checkpoint_factor: Annotated[float, typer.Option(
        min=1.0, help="c in the seed's A/c for activation checkpointing, when the architecture "
                      "cannot measure it.")] = 4.0,
    world_size: Annotated[int, typer.Option(
        min=1, help="Processes (devices) the run spreads over: the budget is per device, "
                    "split by the recipe's train strategy and gradient accumulation.")] = 1,
):
    """Print the memory budget (weights, gradients, optimizer moments, activations) and the measured peak."""
    from difftk.recipe import load_recipe
    from difftk.train.memory import memory_report

    r = load_recipe(recipe, set_)
    report = memory_report(r, batch_size)
    ck = report.measured_checkpointed
    c = report.activation_bytes / max(ck.saved_bytes, 1) if ck is not None else checkpoint_factor
    spread = {"world_size": world_size, "strategy": r.train.strategy,
              "accumulation": r.train.grad_accumulation}
    columns = [("fp32", report.budget(False, **spread)), ("bf16/fp16", report.budget(True, **spread)),
               ("fp32+ckpt", report.budget(False, c, **spread)),
               ("mixed+ckpt", report.budget(True, c, **spread))]
    typer.echo(f"{r.parts['model'].name}: {report.parameters:,} parameters, W = "
               f"{report.weight_bytes / 2**20:.2f} MiB; optimizer {r.parts['optimizer'].name}; "
               f"batch {report.batch_size}")
    if world_size > 1 or r.train.grad_accumulation > 1:
        typer.echo(f"per device: {world_size} device(s), train.strategy = {r.train.strategy}, "
                   f"micro-batch {report.batch_size // (world_size * r.train.grad_accumulation)}")
    typer.echo(f"{'':28s}" + "".join(f"{name:>15s}" for name, _ in columns))
    for row in columns[0][1]:
        typer.echo(f"{row:28s}" + "".join(f"{_mb(col[row]):>15s}" for _, col in columns))
    est = report.budget(False)["total"]
    peak = report.measured.peak_bytes
    typer.echo(f"measured peak, fp32, one real training step:  {_mb(peak).strip()} "
               f"(one device, whole batch; estimate {100 * (est - peak) / peak:+.1f}%)")
    if ck is not None:
        typer.echo(f"measured peak, fp32, with checkpointing:     {_mb(ck.peak_bytes).strip()} "
                   f"(c = {c:.2f} from the activations saved with and without)")
    else:
        typer.echo(f"(this architecture has no checkpoint option: c = {c:g} is assumed)")
    typer.echo("Mixed columns follow seed 001 §12.5.2; under torch.autocast the gradients of the "
               "fp32 master weights stay fp32 (W) and the low-precision copies are transient.")
