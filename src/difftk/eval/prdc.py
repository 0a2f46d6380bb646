"""Precision and recall (Kynkaenniemi et al. 2019, "Improved Precision and Recall Metric for
Assessing Generative Models", Section 2, k = 3) and density and coverage (Naeem et al. 2020,
"Reliable Fidelity and Diversity Metrics for Generative Models", Equations 5 and 6), on
Inception pool features, as the ``prdc`` package (Naeem et al.'s code) computes them.

Each point's radius is the distance to its k-th nearest neighbour in its own set (itself
not counted). Precision: the share of generated points inside some real point's ball;
recall: the share of real points inside some generated point's ball; density: the mean
number of real balls holding a generated point, over k; coverage: the share of real
points whose ball holds a generated point. Distances are computed in float64 in row
blocks, so 50,000 x 50,000 never sits in memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK = 1024


def _distances(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances [len(a), len(b)] (float64; direct differences, not the
    |a|^2 + |b|^2 - 2ab expansion, whose cancellation moves points across a radius)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance of each row of x to its k-th nearest other row."""
    if len(x) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} points in a set")
    return torch.cat([_distances(x[i:i + BLOCK], x).kthvalue(k + 1, dim=1).values
                      for i in range(0, len(x), BLOCK)])


def prdc(real: Tensor, fake: Tensor, k: int = 3) -> dict[str, float]:
    """{precision, recall, density, coverage} of ``fake`` against ``real`` features [N, D]."""
    real, fake = real.double(), fake.double()
    real_r, fake_r = knn_radii(real, k), knn_radii(fake, k)
    in_real_balls = torch.zeros(len(fake), dtype=torch.float64)  # real balls holding each fake
    real_covered = torch.zeros(len(real), dtype=torch.bool)
    real_recalled = torch.zeros(len(real), dtype=torch.bool)
    for i in range(0, len(real), BLOCK):
        d = _distances(real[i:i + BLOCK], fake)  # [block of real, fake]
        inside = d < real_r[i:i + BLOCK, None]
        in_real_balls += inside.sum(0)
        real_covered[i:i + BLOCK] = d.min(dim=1).values < real_r[i:i + BLOCK]
        real_recalled[i:i + BLOCK] = (d < fake_r[None, :]).any(dim=1)
    return {"precision": float((in_real_balls > 0).double().mean()),
            "recall": float(real_recalled.double().mean()),
            "density": float(in_real_balls.mean() / k),
            "coverage": float(real_covered.double().mean())}
