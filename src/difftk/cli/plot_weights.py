"""difftk plot weights: w against logSNR and t, and the weight each choice puts on the x0-MSE."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def plot_weights(
    names: Annotated[list[str] | None, typer.Argument(
        help='Weightings, e.g. min_snr "p2:gamma=1" (default: every installed one).')] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "weights.png"),
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="Also write the numbers: name, relative_to, log_snr, t, w, x0 weight "
                      "per target.")] = None,
    target: Annotated[list[str] | None, typer.Option(
        "--target", help="Targets whose x0-MSE weight to show (repeatable; default x0, eps, "
                         "v).")] = None,
    mse: Annotated[str, typer.Option(
        help='The MSE the per-target columns weight: "x0", or "mean", the posterior mean of '
             "the step t -> t - 1 (seed 003 Figure 4.9; t-space schedules).")] = "x0",
    schedule: Annotated[str, typer.Option(
        help='Schedule the levels come from ("name" or "name:key=value"); table weightings '
             "such as elbo are drawn at its t = 1..T.")] = "linear",
    sigma_data: Annotated[float, typer.Option(help="sigma_data for parts that take one.")] = 0.5,
    log_snr_min: Annotated[float, typer.Option(help="Left end of the logSNR axis.")] = -10.0,
    log_snr_max: Annotated[float, typer.Option(help="Right end of the logSNR axis.")] = 10.0,
):
    """Draw w against logSNR and t for each weighting, and the weight it puts on the x0-MSE per
    target."""
    from difftk.analysis.weight_figures import draw_weights, weight_curves, write_csv
    from difftk.eval.figures import save_png

    curves, sched = weight_curves(names, target or ["x0", "eps", "v"], schedule, sigma_data,
                                  (log_snr_min, log_snr_max), mse)
    lo_t, hi_t = sched.time_range()
    save_png(draw_weights(curves, title=f"schedule = {schedule}",
                          time_label=f"t ({schedule}, {lo_t:g}..{hi_t:g})"), output)
    if csv_path is not None:
        write_csv(curves, csv_path)
    typer.echo(f"{len(curves)} weightings -> {output}" + (f", {csv_path}" if csv_path else ""))
