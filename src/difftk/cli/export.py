"""difftk export: a trained run in another library's format (diffusers)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import fail
from difftk.errors import DifftkError


def export(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint directory, its run directory, or checkpoints/latest.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The folder to write.")],
    format_: Annotated[str, typer.Option(
        "--format", help='Target format: "diffusers" (UNet2DModel + scheduler config).')
    ] = "diffusers",
    ema: Annotated[bool, typer.Option(help="Export the EMA weights (--no-ema: the raw ones).")
                   ] = True,
):
    """Write a trained model in another library's format: diffusers' UNet2DModel folder."""
    try:
        from difftk.interop.export import FORMATS, export_diffusers

        if format_ not in FORMATS:
            raise DifftkError(f'unknown export format "{format_}" (formats: {", ".join(FORMATS)})')
        done = export_diffusers(checkpoint, output, use_ema=ema)
    except DifftkError as exc:
        raise fail(exc) from None
    typer.echo(f"{done.weights} weights of step {done.step} ({done.parameters:,} parameters, "
               f"prediction_type {done.prediction_type}) -> {done.folder}\n"
               f"load: UNet2DModel.from_pretrained(DIR), DDPMScheduler.from_pretrained(DIR); "
               f"timesteps count 0..T-1")
