"""difftk sample: draw from a checkpoint or a post-hoc EMA weights file."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import GuideOption, SetOption, fail
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
        help="Guidance scale: 1 unguided, >1 guided (classifier-free, or autoguidance with "
             "--guide); 0 the unconditional (or guiding) model alone.")
    ] = None,
    guide: GuideOption = None,
    ema: Annotated[bool, typer.Option(help="Use the EMA weights (--no-ema: raw weights).")] = True,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Samples drawn at once (the set drawn does not depend on it).")] = 256,
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')] = "auto",
):
    """Draw samples from a trained model into a PNG grid, an .npz file or a PNG folder.

    Sample i has its own seeded noise (EDM's per-image seeds) and, for a class-conditional
    model, label i mod the number of labels, so the set is the same for any --batch-size and
    any number of processes. Under torchrun (--format png-dir) each process draws its share
    of the batches; a batch whose files exist is skipped, so a killed job resumes."""
    from difftk.run.runtime import announce_failure, make_runtime

    runtime = None
    try:
        runtime = make_runtime(device, distributed=True)
        _sample(checkpoint, sampler, steps, n, output, format_, seed, label, guidance, ema,
                batch_size, set_, runtime, guide)
    except DifftkError as exc:
        error = announce_failure(exc, runtime)
        if runtime is None or not runtime.distributed:
            raise error from None
        runtime.exit_process(fail(error).exit_code)
    runtime.close()
    runtime.exit_process(0)


def _sample(checkpoint, sampler, steps, n, output, format_, seed, label, guidance, ema,
            batch_size, set_, runtime, guide=None):
    import torch

    from difftk.cli.work_progress import counted_progress
    from difftk.eval import sample_files
    from difftk.eval.figures import sample_figure, save_png
    from difftk.eval.sample_set import SampleBatches, draw, labels_for, sample_png_dir
    from difftk.eval.trained_model import load_trained_model, with_guide
    from difftk.recipe import sampler_with_overrides

    fmt = _format(output, format_)
    if runtime.world_size > 1 and fmt is not Format.png_dir:
        raise DifftkError("under torchrun, difftk sample writes --format png-dir (each process "
                          "its own files); give a directory with --format png-dir")
    dev = runtime.device
    model = load_trained_model(checkpoint, dev, use_ema=ema)
    if guide is not None:
        model = with_guide(model, guide, dev, use_ema=ema)
    classes = model.spec.num_classes
    if label and not classes:
        raise DifftkError(f"{checkpoint}: --label needs a class-conditional model "
                          "(train.class_conditional = true)")
    if label and not all(0 <= k < classes for k in label):
        raise DifftkError(f"--label must lie in 0..{classes - 1}")
    chosen = sampler_with_overrides(model.recipe, sampler, steps, guidance, set_)
    if runtime.is_main:  # what will run, after --sampler carried what it shares
        settings = ", ".join(f"{k}={v}" for k, v in chosen.params().items())
        typer.echo(f"sampler {chosen.name}: {settings}", err=True)
    cycle = None
    if classes and chosen.guidance != 0:  # guidance 0 samples unconditionally
        cycle = list(label) if label else list(range(classes))
    data_part = model.recipe.parts["data"]
    plan = SampleBatches(n, batch_size, runtime.rank, runtime.world_size)
    if fmt is Format.png_dir and model.kind != "image":
        raise DifftkError(f"--format png-dir writes images, and {checkpoint} draws "
                          f"{model.kind} samples")
    share = sum(len(r) for r in plan.mine())
    try:  # -o into a read-only folder, or under a file: one sentence
        with counted_progress(share, "sampling", "samples") as advance:
            if fmt is Format.png_dir:
                written, skipped, nfe = sample_png_dir(
                    chosen, model, output, plan, seed, cycle, dev, data_part,
                    advance if runtime.is_main else None)
                totals = runtime.sum_(torch.tensor([written, skipped], dtype=torch.float64,
                                                   device=dev))
                if runtime.is_main:
                    kept = f", {int(totals[1])} already there" if totals[1] else ""
                    typer.echo(f"{int(totals[0])} samples from step {model.step} with "
                               f"{chosen.name} ({nfe} network evaluations each){kept} -> "
                               f"{output}")
                return
            parts, nfe = [], 0
            for indices in plan.mine():
                pixels, _, nfe = draw(chosen, model, indices, seed, cycle, dev)
                parts.append(pixels)
                advance(len(indices))
        pixels = torch.cat(parts)
        labels = labels_for(range(n), cycle, dev)
        if fmt is Format.npz:
            sample_files.write_npz(output, pixels, labels, sample_files.value_range(
                model.kind, data_part, model.spec.shape))
        else:
            save_png(sample_figure(pixels, pixel_range=model.pixel_range), output)
    except OSError as exc:
        raise DifftkError(f"{exc.filename or output}: {exc.strerror or exc}") from None
    typer.echo(f"{n} samples from step {model.step} with {chosen.name} "
               f"({nfe} network evaluations each) -> {output}")
