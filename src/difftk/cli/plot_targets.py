"""difftk plot targets: seed 000 §3's diagnostics of the prediction targets against SNR."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import fail
from difftk.errors import DifftkError


def plot_targets(
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "targets.png"),
    csv: Annotated[Path | None, typer.Option(help="Also write the numbers as CSV.")] = None,
    samples: Annotated[int, typer.Option(
        help="Monte Carlo draws per SNR on the digits (0: closed forms only).")] = 2000,
    points: Annotated[int, typer.Option(help="SNR values, log-spaced over 1e-3..1e3.")] = 13,
    seed: Annotated[int, typer.Option(help="Seed of the Monte Carlo draws.")] = 0,
    schedule: Annotated[str, typer.Option(
        help='Schedule whose time t the second row of panels uses ("name" or '
             '"name:key=value").')] = "linear",
):
    """Correlation with x_t, slope and strength of E[y | x_t] and conditional variance of
    x0/eps/v/score against SNR and t: Gaussian closed forms as lines, Monte Carlo on the
    whitened digits as points."""
    import torch

    from difftk.analysis.target_diagnostics import (
        draw_target_diagnostics,
        standardized_digits,
        target_diagnostics_table,
    )
    from difftk.recipe import component_from_spec

    snrs = torch.logspace(-3, 3, points, dtype=torch.float64)
    data = standardized_digits() if samples > 0 else None
    try:
        sched = component_from_spec("schedule", schedule)
    except DifftkError as exc:
        raise fail(exc) from None
    rows = target_diagnostics_table(snrs, data, n=max(samples, 1), seed=seed, schedule=sched)
    _save(draw_target_diagnostics(rows, time_label=f"t ({schedule})"), output)
    if csv is not None:
        _write_csv(rows, csv)
    typer.echo(f"wrote {output}" + (f" and {csv}" if csv else ""))


def _save(fig, output: Path) -> None:
    import matplotlib.pyplot as plt

    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)


def _write_csv(rows: list[dict], path: Path) -> None:
    import csv as csv_module

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv_module.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
