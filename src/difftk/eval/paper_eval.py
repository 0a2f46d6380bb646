"""Paper metrics end to end: reference statistics of a real set, features of a sample set
(files, or drawn from a checkpoint as they are made), and the scores of one against the other,
over any number of processes (torchrun), each reading or drawing its share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from difftk.eval.feature_extraction import (
    FeatureNetworks,
    FeatureSink,
    SetFeatures,
    cached_items_features,
)
from difftk.eval.image_sets import open_image_set
from difftk.eval.paper_metrics import check_compatible, paper_metrics, reference_from
from difftk.eval.reference_stats import ReferenceStats, read_reference


def reference_statistics(source: Path, split: str, networks: FeatureNetworks,
                         metrics: list[str], runtime, *, batch_size: int = 64,
                         keep_features: int = 10_000, cache: Path | None = None,
                         progress=None) -> ReferenceStats:
    """The statistics of ``source``'s ``split`` for ``metrics`` (prdc keeps pool features)."""
    items = open_image_set(source, split)
    wanted = [m for m in metrics if m != "is"]  # the Inception Score has no reference
    keep = keep_features if "prdc" in wanted else 0
    features, _ = cached_items_features(items, networks, wanted, runtime, cache, batch_size,
                                        keep, progress)
    meta = {"source": str(source), "split": split, "metrics": wanted} | networks.identity
    return reference_from(features, meta, keep)


def files_features(path: Path, networks, metrics, runtime, *, batch_size: int = 64,
                   cache: Path | None = None, progress=None) -> SetFeatures:
    """Features of a sample set on disk (a PNG folder, a zip, an .npz)."""
    items = open_image_set(path)
    return cached_items_features(items, networks, metrics, runtime, cache, batch_size,
                                 progress=progress)[0]


def drawn_features(model, sampler, plan, seed: int, classes, networks, metrics, runtime,
                   progress=None) -> tuple[SetFeatures, int]:
    """Features of the samples ``plan`` gives this process, drawn as ``difftk sample`` draws
    them (per-sample seeds) and quantised to 0-255 as its PNG files are, never written."""
    from difftk.data.pixel_scaling import pixel_scaling
    from difftk.eval.sample_files import to_uint8
    from difftk.eval.sample_set import draw

    sink = FeatureSink(networks, metrics)
    nfe = 0
    data_part = model.recipe.parts["data"]
    for indices in plan.mine():
        pixels, _, nfe = draw(sampler, model, indices, seed, classes, runtime.device)
        mean, std = pixel_scaling(data_part, pixels.shape[1])
        images = torch.from_numpy(to_uint8(pixels, mean, std)).permute(0, 3, 1, 2)
        sink.add(np.asarray(indices), images)
        if progress is not None:
            progress(len(indices))
    return sink.finish(runtime), nfe


def score(samples: SetFeatures, ref_path: Path, networks: FeatureNetworks, metrics,
          runtime, batch_size: int = 64) -> dict[str, float]:
    """``metrics`` of the samples against the reference file ``ref_path``."""
    from difftk.data.items import ArrayItems
    from difftk.eval.feature_extraction import items_features

    ref = read_reference(ref_path)
    check_compatible(ref, networks.convention, str(ref_path))
    if "prdc" in metrics and ref.pool_features is None and ref.images is not None:
        # an ADM reference batch: its images give the reference points, as in its evaluator
        images = ArrayItems(np.moveaxis(ref.images, -1, 1), str(ref_path))
        ref.pool_features = items_features(images, networks, ["prdc"], runtime,
                                           batch_size).pool.numpy()
    return paper_metrics(samples, ref, metrics, str(ref_path))
