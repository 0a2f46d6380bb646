"""The Frechet distance between two samples' Gaussians without forming d x d matrices.

With centred samples A = (X1 - mu1) / sqrt(n1 - 1) (d x n1) and B likewise, C1 = A A^T
and C2 = B B^T, and the nonzero eigenvalues of C1 C2 are those of (A^T B)(A^T B)^T, so

    tr((C1 C2)^{1/2}) = ||A^T B||_*  (the sum of the singular values of the n1 x n2 matrix)
    FID = |mu1 - mu2|^2 + ||A||_F^2 + ||B||_F^2 - 2 ||A^T B||_*

exactly (Heusel et al. 2017's formula, seed 004 Coding I.9's distance). It costs
O(d n1 n2) instead of O(d^3): for 2048 Inception features and fewer samples than that it
is the cheaper route; with more samples eval/metrics.py's covariance form is.
"""

from __future__ import annotations

import numpy as np

from difftk.eval.metrics import frechet_distance


def frechet_distance_of_samples(a: np.ndarray, b: np.ndarray) -> float:
    """FID of features a [n1, d], b [n2, d] (float64), by whichever form is cheaper."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if max(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(a, b)
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca = (a - mu_a) / np.sqrt(len(a) - 1)
    cb = (b - mu_b) / np.sqrt(len(b) - 1)
    nuclear = np.linalg.svd(ca @ cb.T, compute_uv=False).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + (ca * ca).sum() + (cb * cb).sum() - 2 * nuclear)
