"""The metrics papers report, from a sample set's features and a reference file.

FID, sFID and FD-DINOv2 are the Frechet distance of the two Gaussians, computed as
pytorch-fid and EDM do (scipy's sqrtm; eval/feature_moments.py); the Inception Score needs
the samples alone; precision, recall, density and coverage compare the samples' pool
features with the reference's (eval/prdc.py).
"""

from __future__ import annotations

import numpy as np
import torch

from difftk.errors import DifftkError
from difftk.eval.feature_extraction import SetFeatures
from difftk.eval.reference_stats import ReferenceStats

FRECHET = {"fid": "fid", "sfid": "sfid", "fd_dinov2": "fd_dinov2"}


def reference_from(features: SetFeatures, meta: dict, keep_features: int = 10_000
                   ) -> ReferenceStats:
    """The reference file's content for a real set: its statistics and up to
    ``keep_features`` of its pool features, evenly spaced over the set (precision/recall)."""
    pool = None
    if features.pool is not None and keep_features > 0:
        take = np.linspace(0, len(features.pool) - 1, min(keep_features, len(features.pool)))
        pool = features.pool[np.unique(take.round().astype(np.int64))].numpy()
    return ReferenceStats(stats=dict(features.stats), pool_features=pool,
                          meta=meta | {"count": features.count})


def check_compatible(ref: ReferenceStats, convention: str, where: str) -> None:
    made = ref.meta.get("convention")
    if made is not None and made != convention:
        raise DifftkError(f"{where} was made with --inception-input {made}, and these samples "
                          f"with {convention}: features of the two conventions do not compare; "
                          f"use --inception-input {made}")


def paper_metrics(samples: SetFeatures, ref: ReferenceStats, metrics: list[str],
                  where: str, k: int = 3) -> dict[str, float]:
    from difftk.eval.feature_moments import frechet_distance_sqrtm

    out: dict[str, float] = {}
    for metric in metrics:
        if metric in FRECHET:
            if metric not in ref.stats:
                raise DifftkError(f"{where} holds no {metric} statistics; make them with "
                                  f"difftk eval-stats --metrics {metric}")
            out[metric] = frechet_distance_sqrtm(*samples.stats[metric], *ref.stats[metric])
        elif metric == "is":
            from difftk.eval.inception_score import inception_score

            out["is"], out["is_std"] = inception_score(samples.logits)
        elif metric == "prdc":
            from difftk.eval.prdc import prdc

            if ref.pool_features is None:
                raise DifftkError(f"{where} holds no pool features for precision/recall; make "
                                  "it with difftk eval-stats --metrics prdc")
            out |= prdc(torch.from_numpy(ref.pool_features), samples.pool, k)
    return out
