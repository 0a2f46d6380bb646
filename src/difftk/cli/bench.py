"""difftk bench: images/s, step split, memory, FLOPs and MFU of a recipe, side by side with
a raw PyTorch loop and diffusers (docs/performance.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption
from difftk.cli.info import _parse_shape


def bench(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe whose training step to measure.")],
    set_: SetOption = None,
    steps: Annotated[int, typer.Option(min=1, help="Measured steps of each subject.")] = 20,
    warmup: Annotated[int, typer.Option(min=0, help="Steps of each subject thrown away first.")] = 5,
    batch: Annotated[int | None, typer.Option(
        min=1, help="Batch size (default: the recipe's train.batch_size).")] = None,
    compare: Annotated[str, typer.Option(
        help="Baselines, comma-separated: raw (a hand-written loop on the same network), "
             "diffusers (UNet2DModel + DDPMScheduler at the same layout).")] = "",
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON.")] = None,
    peak_tflops: Annotated[float | None, typer.Option(
        min=0.0, help="The device's dense peak TFLOP/s for MFU, when the table lacks it.")] = None,
    shape: Annotated[str | None, typer.Option(
        help="Train on random data of shape C,H,W (or D) instead of the recipe's data.")] = None,
    classes: Annotated[int, typer.Option(min=0, help="Classes of the random data (with --shape).")] = 0,
    sampling: Annotated[bool, typer.Option(
        help="Also time the recipe's sampler per network evaluation vs a bare forward.")] = False,
    split_steps: Annotated[int, typer.Option(
        min=0, help="Probed steps for the step split (0: no split).")] = 10,
    profile: Annotated[Path | None, typer.Option(
        help="Write torch.profiler's operator table of 5 more steps to this file.")] = None,
):
    """Measure how fast a recipe trains: images/s, step split, peak memory, FLOPs, MFU."""
    from difftk.bench.report import report_lines
    from difftk.bench.run import BenchOptions, run_bench
    from difftk.recipe import load_recipe
    from difftk.run.runtime import make_runtime

    r = load_recipe(recipe, set_)
    options = BenchOptions(
        steps=steps, warmup=warmup, batch=batch,
        compare=tuple(c.strip() for c in compare.split(",") if c.strip()),
        peak_tflops=peak_tflops or None, shape=None if shape is None else _parse_shape(shape),
        classes=classes, sampling=sampling, split_steps=split_steps,
        profile_steps=5 if profile is not None else 0)
    result = run_bench(r, make_runtime(r.run.device).device, options)
    if profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        profile.write_text(result.pop("profile"))
    for line in report_lines(result):
        typer.echo(line)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=1) + "\n")
