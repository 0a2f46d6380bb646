"""difftk plot trajectory: a trained run's samples from noise to data, with the denoiser's x0
estimate at chosen steps (seed 003 Figure 1.1)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption
from difftk.errors import DifftkError


def plot_trajectory(
    run_path: Annotated[Path, typer.Argument(
        help="A run directory, its checkpoints/latest, or a checkpoint step directory.")],
    n: Annotated[int, typer.Option("-n", "--num", min=1, max=10_000,
                                   help="Samples (rows; points for 2-D data).")] = 6,
    columns: Annotated[int, typer.Option(
        min=2, help="Steps shown, spread evenly from the first to the last.")] = 8,
    at: Annotated[str, typer.Option(
        help="Comma list of the sampler's step indices to show instead (0 = the noisiest).")
    ] = "",
    sampler: Annotated[str | None, typer.Option(help="Sampler (default: the recipe's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Number of sampler steps.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "trajectory.png"),
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="Per step shown: level, spread of x_t and of the x0 estimate, distance "
                      "to the final sample (default: beside the PNG).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial noise.")] = 0,
    ema: Annotated[bool, typer.Option(help="Use the EMA weights (--no-ema: raw weights).")] = True,
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')] = "auto",
):
    """Rows = samples; columns = x_t and the x0 estimate at each chosen step, then the sample.
    Writes the PNG, a CSV and the run's TensorBoard (analysis/trajectory)."""
    import torch

    from difftk.analysis.denoising_trajectory import (
        denoising_trajectory,
        draw_trajectory,
        trajectory_rows,
    )
    from difftk.analysis.table_output import write_rows
    from difftk.analysis.trained_run import load_trained_run, log_analysis_figure
    from difftk.eval.figures import figure_to_image, save_png
    from difftk.eval.generate import cycle_labels
    from difftk.recipe import sampler_with_overrides

    try:
        chosen = [int(v) for v in at.split(",") if v.strip()] if at else None
    except ValueError:
        raise DifftkError(f'--at "{at}": give step indices like 0,10,50') from None
    run = load_trained_run(run_path, device, ema)
    latents = run.recipe.parts.get("latents")
    if latents is not None and not latents.in_pixel_space:
        raise DifftkError(f'plot trajectory draws runs trained on pixels, and this run trains on '
                          f'the "{latents.name}" latents')
    chosen_sampler = sampler_with_overrides(run.recipe, sampler, steps, None, set_)
    shape = tuple(run.heldout.shape[1:])
    gen = torch.Generator(run.device).manual_seed(seed)
    noise = torch.randn((n, *shape), generator=gen, device=run.device)
    labels = None
    if run.heldout_labels is not None:  # a class-conditional model: the held-out class mix
        labels = cycle_labels(run.heldout_labels, n, run.device)
    try:
        traj = denoising_trajectory(chosen_sampler, run.denoiser, noise, gen, labels, chosen,
                                    columns)
    except ValueError as exc:
        raise DifftkError(f"--at: {exc}") from None
    title = (f"denoising trajectory, step {run.step}, {chosen_sampler.name} sampler "
             f"({traj.total_steps} steps)")
    pixel_range = getattr(run.denoiser, "pixel_range", None)
    image = figure_to_image(draw_trajectory(traj, title, f"t ({run.schedule.name})",
                                            pixel_range))
    save_png(image, output)
    csv_path = csv_path or output.with_suffix(".csv")
    write_rows(trajectory_rows(traj), csv_path)
    tb = log_analysis_figure(run, "trajectory", image)
    typer.echo(f"{n} samples, {len(traj.steps)} of {traj.total_steps} steps -> {output}, "
               f"{csv_path}" + (f", TensorBoard {tb} (analysis/trajectory)" if tb else ""))
