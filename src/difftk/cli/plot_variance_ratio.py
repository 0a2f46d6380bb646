"""difftk plot variance-ratio: beta_t / beta_tilde_t across steps (seed 003 Figure 6.4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import fail
from difftk.errors import DifftkError


def plot_variance_ratio(
    names: Annotated[list[str] | None, typer.Argument(
        help='t-space schedules, e.g. linear cosine "linear:T=4000" (default: linear, '
             "cosine).")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "variance_ratio.png"),
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="Also write the numbers: schedule, t, t/T, beta, beta_tilde, ratio.")
    ] = None,
):
    """Draw the ratio of the forward variance beta_t to the posterior variance beta_tilde_t."""
    try:
        from difftk.analysis.table_output import write_rows
        from difftk.analysis.variance_ratio_figures import (
            draw_variance_ratio,
            variance_ratio_curve,
            variance_ratio_rows,
        )
        from difftk.eval.figures import figure_to_image, save_png
        from difftk.recipe import component_from_spec

        curves = []
        for spec in names or ["linear", "cosine"]:
            schedule = component_from_spec("schedule", spec)
            if not schedule.has_table:
                raise DifftkError(f'{spec}: beta_t and beta_tilde_t are the steps of a table of T '
                                  f'levels, and the schedule "{schedule.name}" has none; name a '
                                  "t-space schedule")
            curves.append(variance_ratio_curve(spec, schedule))
        save_png(figure_to_image(draw_variance_ratio(curves)), output)
        if csv_path is not None:
            write_rows(variance_ratio_rows(curves), csv_path)
    except DifftkError as exc:
        raise fail(exc) from None
    typer.echo(f"{len(curves)} schedules -> {output}" + (f", {csv_path}" if csv_path else ""))
