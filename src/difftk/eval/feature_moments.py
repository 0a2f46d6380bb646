"""Gaussian statistics of a feature set accumulated batch by batch and summed over processes.

FID needs only the mean and covariance of each feature set (Heusel et al. 2017), so nothing
holds the set: each process adds its batches to a count, a sum and a sum of outer products
(float64), and the processes' sums add up to those of the whole set, whatever the split.
The covariance is the unbiased one (N - 1), as pytorch-fid's and EDM's ``np.cov`` give.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


@dataclass
class FeatureMoments:
    dim: int
    count: int = 0
    total: Tensor = field(init=False)
    outer: Tensor = field(init=False)

    def __post_init__(self):
        self.total = torch.zeros(self.dim, dtype=torch.float64)
        self.outer = torch.zeros(self.dim, self.dim, dtype=torch.float64)

    def add(self, features: Tensor) -> None:
        f = features.detach().to("cpu", torch.float64).reshape(len(features), -1)
        self.count += len(f)
        self.total += f.sum(0)
        self.outer += f.T @ f

    def summed(self, runtime) -> FeatureMoments:
        """The moments of every process's features (runtime.sum_ over the group)."""
        packed = torch.cat([torch.tensor([float(self.count)], dtype=torch.float64),
                            self.total, self.outer.flatten()]).to(runtime.device)
        packed = runtime.sum_(packed).cpu()
        out = FeatureMoments(self.dim)
        out.count = int(round(float(packed[0])))
        out.total = packed[1:1 + self.dim].clone()
        out.outer = packed[1 + self.dim:].view(self.dim, self.dim).clone()
        return out

    def mu_sigma(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count < 2:
            raise ValueError("a covariance needs at least 2 feature vectors")
        mu = self.total / self.count
        sigma = (self.outer - self.count * torch.outer(mu, mu)) / (self.count - 1)
        return mu.numpy(), ((sigma + sigma.T) / 2).numpy()


def frechet_distance_sqrtm(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                           sigma2: np.ndarray) -> float:
    """FID as pytorch-fid's ``calculate_frechet_distance`` and EDM's ``fid.py`` compute it:
    scipy's ``sqrtm`` of sigma1 sigma2, real part (pytorch-fid adds 1e-6 to the diagonals when
    the product is singular and sqrtm returns non-finite values; so does this)."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = np.real(covmean)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def rows_in_index_order(runtime, indices: Tensor, rows: Tensor) -> Tensor:
    """Every process's ``rows`` (indexed by ``indices``), gathered and sorted by index: the
    whole set in its own order, on every process, for metrics that need the features
    themselves (precision/recall, the Inception Score's splits)."""
    if runtime.alone:
        return rows[torch.argsort(indices)]
    count = torch.tensor([len(indices)], dtype=torch.float64, device=runtime.device)
    most = int(runtime.max_float(float(count.item())))
    pad = most - len(indices)
    idx = torch.cat([indices.long(), torch.full((pad,), -1, dtype=torch.long)])
    padded = torch.cat([rows, rows.new_zeros((pad, *rows.shape[1:]))])
    all_idx = runtime.gather(idx.to(runtime.device)).cpu()
    all_rows = runtime.gather(padded.to(runtime.device)).cpu()
    keep = all_idx >= 0
    all_idx, all_rows = all_idx[keep], all_rows[keep]
    return all_rows[torch.argsort(all_idx)]
