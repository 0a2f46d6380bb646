"""difftk sample: draw from a checkpoint or a post-hoc EMA weights file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption, app
from difftk.errors import DifftkError


class Format(StrEnum):
    auto = "auto"
    grid = "grid"
    npz = "npz"
    png_dir = "png-dir"


def _format(output: Path, chosen: Format) -> Format:
    if chosen is not Format.auto:
        return chosen
    by_suffix = {".png": Format.grid, ".npz": Format.npz}
    if output.suffix not in by_suffix:
        raise DifftkError(f"{output}: the output must end in .png or .npz, or be a directory "
                          f"with --format png-dir")
    return by_suffix[output.suffix]


@app.command(rich_help_panel="Generation")
def sample(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint directory, its run directory, checkpoints/latest, or a "
             ".safetensors file written by difftk ema.")],
    sampler: Annotated[str | None, typer.Option(
        help="Sampler name (default: the recipe's); see difftk list-plugins --family samplers.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Number of sampler steps.")] = None,
    n: Annotated[int, typer.Option("-n", "--num", min=1, help="Number of samples.")] = 64,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Output file, or directory for --format png-dir.")
    ] = Path("samples.png"),
    format_: Annotated[Format, typer.Option(
        "--format", help="grid: one PNG grid (or scatter plot); npz: the arrays, their "
                         "value_range and labels; png-dir: one 0-255 PNG per sample (label "
                         "in the name), for torch-fidelity or clean-fid; auto: from the "
                         "output's suffix.")] = Format.auto,
    seed: Annotated[int, typer.Option(help="Seed of the initial noise.")] = 0,
    label: Annotated[list[int] | None, typer.Option(
        help="Class label for a class-conditional model; repeat it to cycle through a list "
             "(default: cycle through every class).")
    ] = None,
    guidance: Annotated[float | None, typer.Option(
        help="Classifier-free guidance scale: 1 conditional, 0 unconditional, >1 guided.")
    ] = None,
    ema: Annotated[bool, typer.Option(help="Use the EMA weights (--no-ema: raw weights).")] = True,
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')] = "auto",
):
    """Draw samples from a trained model into a PNG grid, an .npz file or a PNG folder."""
    import torch

    from difftk.eval import sample_files
    from difftk.eval.figures import sample_figure, save_png
    from difftk.eval.generate import cycle_labels
    from difftk.eval.trained_model import load_trained_model
    from difftk.recipe import sampler_with_overrides
    from difftk.train.runtime import make_runtime

    fmt = _format(output, format_)
    dev = make_runtime(device).device
    model = load_trained_model(checkpoint, dev, use_ema=ema)
    classes = model.spec.num_classes
    if label and not classes:
        raise DifftkError(f"{checkpoint}: --label needs a class-conditional model "
                          "(train.class_conditional = true)")
    if label and not all(0 <= k < classes for k in label):
        raise DifftkError(f"--label must lie in 0..{classes - 1}")
    chosen = sampler_with_overrides(model.recipe, sampler, steps, guidance, set_)
    labels = None
    if classes and chosen.guidance != 0:  # guidance 0 samples unconditionally
        labels = cycle_labels(list(label) if label else list(range(classes)), n, dev)
    gen = torch.Generator(dev).manual_seed(seed)
    noise = torch.randn((n, *model.spec.shape), generator=gen, device=dev)
    result = chosen.sample(model.denoiser, noise, gen, labels)
    pixels = model.to_pixels(result.x)  # decoded when the model runs on [latents]
    data_part = model.recipe.parts["data"]
    try:  # -o into a read-only folder, or under a file: one sentence
        if fmt is Format.npz:
            sample_files.write_npz(output, pixels, labels, sample_files.value_range(
                model.kind, data_part, model.spec.shape))
        elif fmt is Format.png_dir:
            if model.kind != "image":
                raise DifftkError(f"--format png-dir writes images, and {checkpoint} draws "
                                  f"{model.kind} samples")
            sample_files.write_png_dir(output, pixels, labels, data_part)
        else:
            save_png(sample_figure(pixels), output)
    except OSError as exc:
        raise DifftkError(f"{exc.filename or output}: {exc.strerror or exc}") from None
    typer.echo(f"{n} samples from step {model.step} with {chosen.name} "
               f"({result.nfe} network evaluations each) -> {output}")
