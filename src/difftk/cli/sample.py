"""difftk sample: draw from a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption, app, fail
from difftk.errors import DifftkError


@app.command(rich_help_panel="Generation")
def sample(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint directory, its run directory, or checkpoints/latest.")],
    sampler: Annotated[str | None, typer.Option(
        help="Sampler name (default: the recipe's); see difftk list-plugins --family samplers.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Number of sampler steps.")] = None,
    n: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 64,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Output: .png writes a grid (or scatter plot), .npz the arrays.")
    ] = Path("samples.png"),
    seed: Annotated[int, typer.Option(help="Seed of the initial noise.")] = 0,
    label: Annotated[list[int] | None, typer.Option(
        help="Class label for a class-conditional model; repeat it to cycle through a list.")
    ] = None,
    guidance: Annotated[float | None, typer.Option(
        help="Classifier-free guidance scale: 1 conditional, 0 unconditional, >1 guided.")
    ] = None,
    ema: Annotated[bool, typer.Option(help="Use the EMA weights (--no-ema: raw weights).")] = True,
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')] = "auto",
):
    """Draw samples from a trained checkpoint into a PNG grid or an .npz file."""
    try:
        import numpy as np
        import torch

        from difftk.eval.figures import sample_figure, save_png
        from difftk.recipe import sampler_with_overrides
        from difftk.train.restore import restore
        from difftk.train.runtime import make_runtime

        if output.suffix not in (".png", ".npz"):
            raise DifftkError(f"{output}: the output must end in .png or .npz")
        dev = make_runtime(device).device
        restored = restore(checkpoint, dev, use_ema=ema)
        classes = restored.spec.num_classes
        if label and not classes:
            raise DifftkError(f"{checkpoint}: --label needs a class-conditional model "
                              "(train.class_conditional = true)")
        if label and not all(0 <= k < classes for k in label):
            raise DifftkError(f"--label must lie in 0..{classes - 1}")
        chosen = sampler_with_overrides(restored.recipe, sampler, steps, guidance, set_)
        gen = torch.Generator(dev).manual_seed(seed)
        noise = torch.randn((n, *restored.spec.shape), generator=gen, device=dev)
        result = chosen.sample(restored.denoiser, noise, gen, list(label) if label else None)
        if output.suffix == ".npz":
            output.parent.mkdir(parents=True, exist_ok=True)
            np.savez(output, samples=result.x.cpu().numpy())
        else:
            save_png(sample_figure(result.x), output)
    except DifftkError as exc:
        raise fail(exc) from None
    except OSError as exc:  # e.g. -o into a read-only folder
        raise fail(DifftkError(f"{exc.filename or output}: {exc.strerror or exc}")) from None
    typer.echo(f"{n} samples from step {restored.step} with {chosen.name} "
               f"({result.nfe} network evaluations each) -> {output}")
