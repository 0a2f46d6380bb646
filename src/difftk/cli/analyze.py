"""difftk analyze: the seeds' diagnostics measured on a trained run (PNG, CSV, TensorBoard)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import app, fail
from difftk.errors import DifftkError

analyze_app = typer.Typer(no_args_is_help=True, help="Diagnose a trained run: mutual "
                          "information, gradient variance, target statistics (PNG + CSV, and "
                          "the run's TensorBoard under analysis/).")
app.add_typer(analyze_app, name="analyze", rich_help_panel="Inspection")

RunArgument = Annotated[Path, typer.Argument(
    help="A run directory, its checkpoints/latest, or a checkpoint step directory.")]
SamplesOption = Annotated[int, typer.Option(min=1, help="Held-out items used.")]
SeedOption = Annotated[int, typer.Option(help="Seed of the noise draws.")]
EmaOption = Annotated[bool, typer.Option(help="Use the EMA weights (--no-ema: raw weights).")]
DeviceOption = Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')]
CsvOption = Annotated[Path | None, typer.Option("--csv", help="Where to write the numbers "
                                                "(default: beside the PNG).")]


def _outputs(run, name: str, image, rows: list[dict], output: Path, csv_path: Path | None) -> str:
    from difftk.analysis.table_output import write_rows
    from difftk.analysis.trained_run import log_analysis_figure
    from difftk.eval.figures import save_png

    save_png(image, output)
    csv_path = csv_path or output.with_suffix(".csv")
    write_rows(rows, csv_path)
    tb = log_analysis_figure(run, name, image)
    return f"{output}, {csv_path}" + (f", TensorBoard {tb} (analysis/{name})" if tb else "")


@analyze_app.command("information")
def information(
    run_path: RunArgument,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "information.png"),
    csv_path: CsvOption = None,
    points: Annotated[int, typer.Option(min=5, help="logSNR values over the schedule's range.")
                      ] = 41,
    samples: SamplesOption = 512,
    seed: SeedOption = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Items per network call.")] = 256,
    ema: EmaOption = True,
    device: DeviceOption = "auto",
):
    """I(x0; x_t), I(eps; x_t), I(v; x_t) and the score's curve from the denoiser's MMSE
    (I-MMSE identity, seed 001 §3.2), against t and SNR."""
    try:
        from difftk.analysis.run_information import draw_run_information, run_information
        from difftk.analysis.trained_run import load_trained_run
        from difftk.eval.figures import figure_to_image

        run = load_trained_run(run_path, device, ema, samples)
        result = run_information(run, points, seed, batch_size)
        where = _outputs(run, "information", figure_to_image(draw_run_information(result, run)),
                         result.rows, output, csv_path)
    except DifftkError as exc:
        raise fail(exc) from None
    info = result.curves.information
    peak = int(info["v"].argmax())
    typer.echo(f"step {run.step}, {len(run.heldout)} held-out items, {points} logSNR values; "
               f"I(x0; x_t) rises to {info['x0'][-1]:.3g} nats/dim, I(v; x_t) peaks at "
               f"{info['v'][peak]:.3g} at logSNR {result.curves.log_snr[peak]:.2f} -> {where}")
