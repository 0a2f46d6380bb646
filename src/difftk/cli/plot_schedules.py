"""difftk plot schedules: logSNR against t / T for each schedule (seed 001 Figure 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plot_schedules(
    names: Annotated[list[str] | None, typer.Argument(
        help='Schedules, e.g. cosine "linear:T=4000" (default: every installed one).')] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "schedules.png"),
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="Also write the numbers: schedule, variant, t, t/T, alpha, sigma, "
                      "alpha_bar, logSNR.")] = None,
    zero_terminal: Annotated[bool, typer.Option(
        help="Also draw each t-space schedule with zero terminal SNR (dashed).")] = True,
):
    """Draw logSNR and alpha against t / T for each schedule, with and without zero terminal SNR."""
    from difftk.analysis.schedule_figures import draw_schedules, schedule_curves, write_csv
    from difftk.eval.figures import save_png
    from difftk.recipe import component_from_spec
    from difftk.registry import default_registry

    specs = names or default_registry().names("schedules")
    curves = []
    for spec in specs:
        curves += schedule_curves(spec, component_from_spec("schedule", spec), zero_terminal)
    save_png(draw_schedules(curves), output)
    if csv_path is not None:
        write_csv(curves, csv_path)
    typer.echo(f"{len(specs)} schedules -> {output}" + (f", {csv_path}" if csv_path else ""))
