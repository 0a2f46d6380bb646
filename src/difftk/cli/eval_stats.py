"""difftk eval-stats: reference statistics of a real image set, for FID and the other paper
metrics, in the files pytorch-fid, EDM and EDM2 read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import fail
from difftk.errors import DifftkError

METRICS_HELP = ("Comma list of fid, sfid, is, prdc, fd_dinov2 (fid, sfid, is and prdc need "
                "--weights; fd_dinov2 needs --dinov2).")
WEIGHTS_HELP = ("The Inception weights file of pytorch-fid (docs/evaluation.md names it and "
                "says where it comes from; nothing downloads).")
DINOV2_HELP = ("A folder holding DINOv2 ViT-L/14 as transformers saves it "
               "(save_pretrained), for fd_dinov2.")
CONVENTION_HELP = ("How images are resized and scaled for Inception: tf (TF FID, ADM, EDM, "
                   "EDM2, torch-fidelity), pytorch_fid, or clean (clean-fid); "
                   "docs/evaluation.md.")
CACHE_HELP = "A folder where the features of a file set are kept, keyed by its files."


def eval_stats(
    source: Annotated[Path, typer.Argument(
        help="A packed set, an image folder or zip, an .npz, IDX or CIFAR-10 files, or a "
             "recipe.")],
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Where to write: .npz (pytorch-fid / EDM keys) or .pkl "
                               "(EDM2's layout).")] = Path("reference.npz"),
    metrics: Annotated[str, typer.Option(help=METRICS_HELP)] = "fid",
    weights: Annotated[Path | None, typer.Option(help=WEIGHTS_HELP)] = None,
    dinov2: Annotated[Path | None, typer.Option(help=DINOV2_HELP)] = None,
    inception_input: Annotated[str, typer.Option(help=CONVENTION_HELP)] = "tf",
    split: Annotated[str, typer.Option(help="train or test.")] = "train",
    keep_features: Annotated[int, typer.Option(
        min=0, help="Pool features kept for precision/recall (prdc), evenly spaced.")
    ] = 10_000,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per network call.")] = 64,
    cache: Annotated[Path | None, typer.Option(help=CACHE_HELP)] = None,
    device: Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')] = "auto",
):
    """Write the feature statistics of SOURCE (every image of the split) to an .npz or .pkl.

    Under torchrun each process reads its share of the images and the statistics are summed,
    so the file does not depend on the number of processes."""
    from difftk.run.runtime import announce_failure, make_runtime

    runtime = None
    try:
        runtime = make_runtime(device, distributed=True)
        _eval_stats(source, output, metrics, weights, dinov2, inception_input, split,
                    keep_features, batch_size, cache, runtime)
    except DifftkError as exc:
        error = announce_failure(exc, runtime)
        if runtime is None or not runtime.distributed:
            raise error from None
        runtime.exit_process(fail(error).exit_code)
    runtime.close()
    runtime.exit_process(0)


def _eval_stats(source, output, metrics, weights, dinov2, inception_input, split,
                keep_features, batch_size, cache, runtime):
    from difftk.cli.work_progress import counted_progress
    from difftk.eval.feature_extraction import load_networks, my_share, parse_metrics
    from difftk.eval.image_sets import open_image_set
    from difftk.eval.paper_eval import reference_statistics
    from difftk.eval.reference_stats import write_reference

    if output.suffix not in (".npz", ".pkl"):
        raise DifftkError(f"{output}: reference statistics are written as .npz or .pkl")
    names = parse_metrics(metrics)
    networks = load_networks(names, runtime.device, weights, dinov2, inception_input)
    total = len(open_image_set(source, split))
    share = len(my_share(total, runtime.rank, runtime.world_size))
    with counted_progress(share, "features", "images") as advance:
        ref = reference_statistics(source, split, networks, names, runtime,
                                   batch_size=batch_size, keep_features=keep_features,
                                   cache=cache, progress=advance if runtime.is_main else None)
    if runtime.is_main:
        try:
            write_reference(output, ref)
        except OSError as exc:
            raise DifftkError(f"{exc.filename or output}: {exc.strerror or exc}") from None
        typer.echo(f"{ref.meta['count']} images of {source} ({split}): "
                   f"{', '.join(sorted(ref.stats)) or 'pool features'} -> {output}")
