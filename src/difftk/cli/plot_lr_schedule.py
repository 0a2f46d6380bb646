"""difftk plot lr-schedule: the learning rate a recipe trains with, against the step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption, fail
from difftk.errors import DifftkError


def plot_lr_schedule(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe whose schedule to draw.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "lr.png"),
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="Also write the numbers: step, kimg, lr.")] = None,
    max_points: Annotated[int, typer.Option(
        min=2, help="Most steps evaluated (evenly strided; the first and last always).")] = 4000,
    set_: SetOption = None,
):
    """Draw optimizer.lr x the lr_schedule factor at every step of train.steps."""
    try:
        from difftk.analysis.lr_schedule_figures import draw_lr_schedule, lr_curve, write_csv
        from difftk.eval.figures import save_png
        from difftk.recipe import load_recipe

        curve = lr_curve(load_recipe(recipe, set_), max_points)
        save_png(draw_lr_schedule(curve), output)
        if csv_path is not None:
            write_csv(curve, csv_path)
    except DifftkError as exc:
        raise fail(exc) from None
    typer.echo(f"{curve.schedule}: lr {curve.lr.min():.3g} to {curve.lr.max():.3g} over "
               f"{int(curve.step[-1])} steps -> {output}" + (f", {csv_path}" if csv_path else ""))
