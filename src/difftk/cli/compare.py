"""difftk compare: runs side by side, a table of final metrics and recipe differences, and
their shared curves overlaid (PNG + CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.errors import DifftkError


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (runs/<name>).")],
    tags: Annotated[str, typer.Option(
        help='Comma list of scalar tags or globs to draw, e.g. "loss/*,eval/nll_bpd" '
             "(default: every scalar the runs share).")] = "",
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Folder for comparison.csv, curves.png and curves.csv.")
    ] = Path("comparison"),
):
    """Compare runs: one table of final metrics and recipe differences, overlaid curves.

    The table holds each run's last loss/ and eval/ values and the recipe fields that
    differ; the curves are the scalars the runs share, from metrics.jsonl or TensorBoard."""
    from difftk.analysis.run_comparison import (
        MAX_CURVES,
        comparison_rows,
        curve_rows,
        draw_curves,
        read_runs,
        shared_tags,
    )
    from difftk.analysis.table_output import format_table, write_rows
    from difftk.eval.figures import figure_to_image, save_png

    read = read_runs(runs)
    patterns = [t.strip() for t in tags.split(",") if t.strip()]
    chosen = shared_tags(read, patterns)
    if not chosen:
        everyone = shared_tags(read)
        raise DifftkError(
            (f'--tags "{tags}" matches no scalar that every run logged (they share '
             f"{', '.join(everyone[:8])}{', ...' if len(everyone) > 8 else ''})")
            if patterns and everyone else "the runs share no scalar tag to draw")
    rows = comparison_rows(read)
    output.mkdir(parents=True, exist_ok=True)
    write_rows(rows, output / "comparison.csv")
    drawn = chosen[:MAX_CURVES]
    write_rows(curve_rows(read, chosen), output / "curves.csv")
    save_png(figure_to_image(draw_curves(read, drawn)), output / "curves.png")
    typer.echo(format_table(rows, list(rows[0])))
    more = (f" (the first {MAX_CURVES} drawn; --tags chooses)" if len(chosen) > MAX_CURVES
            else "")
    typer.echo(f"{len(read)} runs, {len(chosen)} shared curves{more} -> "
               f"{output / 'comparison.csv'}, {output / 'curves.png'}, {output / 'curves.csv'}")
