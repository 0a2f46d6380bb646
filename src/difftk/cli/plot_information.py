"""difftk plot information: seed 001 Figure 1, the mutual information of each target with x_t."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.plot_targets import _save, _write_csv


def plot_information(
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "information.png"),
    csv: Annotated[Path | None, typer.Option(help="Also write the numbers as CSV.")] = None,
    sigma_data: Annotated[float, typer.Option(
        min=1e-6, help="std of the Gaussian x0 (at 1, v carries no information about x_t).")] = 0.5,
):
    """I(y; x_t) of x0/eps/v/score against t and SNR, closed form for Gaussian x0."""
    from difftk.analysis.information import draw_information, information_table

    rows = information_table(sigma_data)
    _save(draw_information(rows, sigma_data), output)
    if csv is not None:
        _write_csv(rows, csv)
    typer.echo(f"wrote {output}" + (f" and {csv}" if csv else ""))
