"""difftk analyze: the seeds' diagnostics measured on a trained run (PNG, CSV, TensorBoard)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import fail
from difftk.errors import DifftkError

analyze_app = typer.Typer(no_args_is_help=True, help="Diagnose a trained run: mutual "
                          "information, gradient variance, target statistics (PNG + CSV, and "
                          "the run's TensorBoard under analysis/).")

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


def gradients(
    run_path: RunArgument,
    targets: Annotated[str, typer.Option(
        help='Comma list of targets whose unweighted MSE gradient to measure; "run" adds the '
             "run's own loss (its target, weighting and importance weight).")
    ] = "x0,eps,v,edm",
    buckets: Annotated[int, typer.Option(min=1, help="Equal-count logSNR buckets.")] = 8,
    samples: Annotated[int, typer.Option(
        min=2, help="Per-sample gradients in all (one backward pass each).")] = 256,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "gradients.png"),
    csv_path: CsvOption = None,
    seed: SeedOption = 0,
    ema: EmaOption = True,
    device: DeviceOption = "auto",
):
    """Per-sample gradient norms, their variance and each noise-level bucket's share of the
    total gradient, per target (seed 000 §3.3; seed 001 §5.2)."""
    try:
        from difftk.analysis.gradient_variance import draw_gradient_buckets, gradient_buckets
        from difftk.analysis.table_output import format_table
        from difftk.analysis.trained_run import load_trained_run
        from difftk.eval.figures import figure_to_image

        names = [t.strip() for t in targets.split(",") if t.strip()]
        if not names:
            raise DifftkError("--targets names no target")
        if samples < 2 * buckets:
            raise DifftkError(f"--samples must be at least twice --buckets ({2 * buckets})")
        run = load_trained_run(run_path, device, ema)
        result = gradient_buckets(run, names, buckets, samples, seed)
        title = (f"Per-sample gradients by noise level (step {run.step}, {samples} samples, "
                 f"levels from the run's {run.recipe.parts['noise_sampling'].name})")
        image = figure_to_image(draw_gradient_buckets(result, title))
        where = _outputs(run, "gradients", image, result.rows, output, csv_path)
    except DifftkError as exc:
        raise fail(exc) from None
    typer.echo(format_table(result.rows, ["target", "bucket", "log_snr_mid", "t_mid",
                                          "grad_norm_mean", "grad_norm_std", "grad_variance",
                                          "noise_to_signal", "share_projection", "share_norm"]))
    typer.echo(f"-> {where}")


def gradient_noise(
    run_path: RunArgument,
    buckets: Annotated[int, typer.Option(min=3, help="Equal-count logSNR buckets.")] = 8,
    samples: Annotated[int, typer.Option(
        min=6, help="Per-sample gradients in all (one backward pass each).")] = 256,
    points: Annotated[int, typer.Option(min=3, help="logSNR grid of the conditional variance.")
                      ] = 13,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "gradient_noise.png"),
    csv_path: CsvOption = None,
    seed: SeedOption = 0,
    ema: EmaOption = True,
    device: DeviceOption = "auto",
):
    """Seed 000 §3.3: the per-sample gradient variance of each target's MSE against its
    conditional variance Var(y | x_t), by noise level, with a log-log fit per target."""
    try:
        from difftk.analysis.gradient_noise_fit import (
            FIT_TARGETS,
            draw_gradient_noise,
            gradient_noise_fit,
        )
        from difftk.analysis.gradient_variance import gradient_buckets
        from difftk.analysis.run_target_diagnostics import run_target_rows
        from difftk.analysis.table_output import format_table
        from difftk.analysis.trained_run import load_trained_run
        from difftk.eval.figures import figure_to_image

        if samples < 2 * buckets:
            raise DifftkError(f"--samples must be at least twice --buckets ({2 * buckets})")
        run = load_trained_run(run_path, device, ema)
        grads = gradient_buckets(run, list(FIT_TARGETS), buckets, samples, seed)
        pts, fits = gradient_noise_fit(grads.rows, run_target_rows(run, points, seed))
        title = (f"Gradient variance against Var(y | x_t) (step {run.step}, {samples} samples, "
                 f"{buckets} buckets)")
        image = figure_to_image(draw_gradient_noise(pts, fits, title))
        where = _outputs(run, "gradient_noise", image, pts, output, csv_path)
        from difftk.analysis.table_output import write_rows

        fit_csv = (csv_path or output.with_suffix(".csv")).with_suffix(".fit.csv")
        write_rows(fits, fit_csv)
    except DifftkError as exc:
        raise fail(exc) from None
    typer.echo(format_table(fits, ["target", "buckets", "slope", "r2", "log_snr_lo",
                                   "log_snr_hi"]))
    typer.echo(f"-> {where}, {fit_csv}")


def variance_gradients(
    run_path: RunArgument,
    points: Annotated[int, typer.Option(min=2, help="Steps t, spaced geometrically over 1..T.")
                      ] = 16,
    samples: SamplesOption = 64,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "variance_gradients.png"),
    csv_path: CsvOption = None,
    seed: SeedOption = 0,
    ema: EmaOption = True,
    device: DeviceOption = "auto",
):
    """The gradient of the training loss with respect to a learned variance, by step t:
    |dL/d sigma^2| (seed 003 eq. 4.2), |dL/d log sigma^2| (eq. 4.4) and what the head
    receives, medians and means over held-out items."""
    try:
        from difftk.analysis.table_output import format_table
        from difftk.analysis.trained_run import load_trained_run
        from difftk.analysis.variance_gradient_curve import (
            draw_variance_gradients,
            variance_gradient_rows,
        )
        from difftk.eval.figures import figure_to_image

        run = load_trained_run(run_path, device, ema)
        rows = variance_gradient_rows(run, points, samples, seed)
        title = (f"Gradient reaching the {run.denoiser.variance.name} variance (step {run.step}, "
                 f"{samples} items, loss {run.recipe.parts['loss'].name})")
        image = figure_to_image(draw_variance_gradients(rows, title))
        where = _outputs(run, "variance_gradients", image, rows, output, csv_path)
    except DifftkError as exc:
        raise fail(exc) from None
    typer.echo(format_table(rows, ["t", "log_snr", "median_abs_d_variance",
                                   "median_abs_d_log_variance", "median_abs_d_head_output"]))
    typer.echo(f"-> {where}")


def targets(
    run_path: RunArgument,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "targets.png"),
    csv_path: CsvOption = None,
    points: Annotated[int, typer.Option(min=3, help="logSNR values over the schedule's range.")
                      ] = 13,
    samples: SamplesOption = 512,
    seed: SeedOption = 0,
    ema: EmaOption = True,
    device: DeviceOption = "auto",
):
    """Correlation, signed conditional-mean slope, signal and conditional variance of x0, eps,
    v and score against SNR and t, with seed 000 §3.4's summary table, from the network."""
    try:
        from difftk.analysis.run_target_diagnostics import run_target_rows
        from difftk.analysis.table_output import format_table, write_rows
        from difftk.analysis.target_diagnostics import draw_target_diagnostics
        from difftk.analysis.target_summary import summary_rows
        from difftk.analysis.trained_run import load_trained_run
        from difftk.eval.figures import figure_to_image

        run = load_trained_run(run_path, device, ema, samples)
        rows = run_target_rows(run, points, seed)
        fig = draw_target_diagnostics(rows, data_label="network", time_label=run.time_label())
        where = _outputs(run, "targets", figure_to_image(fig), rows, output, csv_path)
        summary = summary_rows(rows)
        summary_path = output.with_name(f"{output.stem}_summary.csv")
        write_rows(summary, summary_path)
    except DifftkError as exc:
        raise fail(exc) from None
    typer.echo(format_table(summary, ["source", "target", "correlation_low", "correlation_high",
                                      "slope_low", "slope_high", "conditional_variance_low",
                                      "conditional_variance_high", "r2_low", "r2_high",
                                      "favours"]))
    typer.echo(f"-> {where}, {summary_path}")
