"""difftk plot forward-noising: a recipe's data set through its forward process at chosen t,
as the training pairs (x_{t-1}, x_t) of seed 003 Figure 1.2."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption, fail
from difftk.errors import DifftkError


def plot_forward_noising(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe whose [data] and [schedule] to use.")],
    times: Annotated[str, typer.Option(
        help="Comma list of times on the schedule's axis (t-space: 1..T; sigma-space: 0..1); "
             "default: six evenly spaced.")] = "",
    n: Annotated[int, typer.Option("-n", "--num", min=1,
                                   help="Images (rows), or points for 2-D data.")] = 6,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "forward_noising.png"),
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="Also write per t: alpha, sigma, logSNR, std of x_t, correlation with x0.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the items and the noise.")] = 0,
    set_: SetOption = None,
):
    """Draw x0 and the pair (x_{t-1}, x_t) at each chosen t for items of the recipe's data."""
    try:
        import numpy as np
        import torch

        from difftk.analysis.forward_noising_figures import (
            draw_forward_pairs,
            forward_pairs,
            forward_rows,
        )
        from difftk.analysis.table_output import write_rows
        from difftk.eval.figures import figure_to_image, save_png
        from difftk.recipe import load_recipe

        r = load_recipe(recipe, set_)
        schedule = r.parts["schedule"]
        lo, hi = schedule.time_range()
        if times:
            try:
                chosen = [float(v) for v in times.split(",") if v.strip()]
            except ValueError:
                raise DifftkError(f'--times "{times}": give numbers like 1,100,500') from None
            bad = [v for v in chosen if not lo <= v <= hi]
            if not chosen or bad:
                raise DifftkError(f"--times must lie in the schedule's range {lo:g}..{hi:g}"
                                  + (f" (got {bad[0]:g})" if bad else ""))
        else:
            chosen = [float(v) for v in np.round(np.linspace(lo, hi, 6), 3)]
        data = r.parts["data"].load()
        gen = torch.Generator().manual_seed(seed)
        count = n if data.kind == "image" else max(n, 500)
        index = torch.randperm(data.train.shape[0], generator=gen)[:count]
        pairs = forward_pairs(data.train[index], schedule, chosen, gen)
        title = f"{r.parts['data'].name} through the {schedule.name} schedule's forward process"
        pixel_range = None
        if data.kind == "image":
            from difftk.run.assemble import data_pixel_range

            pixel_range = data_pixel_range(r, data.train.shape[1])
        save_png(figure_to_image(draw_forward_pairs(pairs, title, pixel_range)), output)
        if csv_path is not None:
            write_rows(forward_rows(pairs), csv_path)
    except DifftkError as exc:
        raise fail(exc) from None
    typer.echo(f"{len(chosen)} times -> {output}" + (f", {csv_path}" if csv_path else ""))
