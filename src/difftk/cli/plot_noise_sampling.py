"""difftk plot noise-sampling: a ln sigma histogram of each training distribution (seed 001 Figure 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.errors import DifftkError


def plot_noise_sampling(
    names: Annotated[list[str] | None, typer.Argument(
        help='Distributions, e.g. log_normal "log_normal:P_mean=-0.4:P_std=1" '
             "(default: every installed one).")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "noise_sampling.png"),
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="Also write the numbers: ln sigma quantiles, mean, std and the fraction "
                      "in range, per distribution.")] = None,
    schedule: Annotated[str, typer.Option(
        help='Schedule that t-distributions draw on ("name" or "name:key=value").')] = "edm",
    draws: Annotated[int, typer.Option("-n", "--draws", min=1,
                                       help="Draws per distribution.")] = 500_000,
    seed: Annotated[int, typer.Option(help="Seed of the draws.")] = 0,
    sigma_min: Annotated[float, typer.Option(help="Left end of the sigma axis.")] = 0.002,
    sigma_max: Annotated[float, typer.Option(help="Right end of the sigma axis.")] = 80.0,
):
    """Histogram ln sigma of many draws from each distribution, over its stated density."""
    from difftk.analysis.noise_sampling_figures import draw_histograms, draw_log_sigma, write_csv
    from difftk.eval.figures import save_png
    from difftk.recipe import component_from_spec
    from difftk.registry import default_registry

    if not 0 < sigma_min < sigma_max:
        raise DifftkError("--sigma-min must be positive and smaller than --sigma-max")
    sched = component_from_spec("schedule", schedule)
    axis = (sigma_min, sigma_max)
    results = [draw_log_sigma(spec, component_from_spec("noise_sampling", spec), sched,
                              n=draws, seed=seed, sigma_range=axis)
               for spec in (names or default_registry().names("noise_sampling"))]
    save_png(draw_histograms(results, title=f"{draws:,} draws each, schedule = {schedule}",
                             sigma_range=axis), output)
    if csv_path is not None:
        write_csv(results, csv_path, axis)
    typer.echo(f"{len(results)} distributions -> {output}" + (f", {csv_path}" if csv_path else ""))
