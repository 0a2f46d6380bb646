"""Per-channel statistics of a data set, computed in float64 chunks.

A whole CIFAR-10 training set in float64 would need 1.2 GB; merging chunk moments with
Chan et al.'s pairwise update (Chan, Golub & LeVeque 1983) keeps memory flat and the
variance exact to float64 rounding (no E[x^2] - E[x]^2 cancellation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DataStats:
    """Counts, range and moments of [N, C, ...] data; std is the unbiased (N - 1) one."""

    count: int  # values per channel
    minimum: float
    maximum: float
    mean: float
    std: float  # over every value: EDM's sigma_data
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    subset: int = 0  # items of a random subset the figures come from (0: every item)
    std_error: float = 0.0  # standard error of ``std`` over that subset


def merge_moments(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Chan et al.'s pairwise update of (count, mean, sum of squared deviations)."""
    n = n_a + n_b
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a + m2_b + delta**2 * (n_a * n_b / n)
    return n, mean, m2


def unmerge_moments(n, mean, m2, n_b, mean_b, m2_b):
    """The inverse of merge_moments: the moments of a set with the part b taken out (exact:
    the training split's statistics from the whole pack's minus its held-out items')."""
    n_a = n - n_b
    mean_a = (n * mean - n_b * mean_b) / n_a
    delta = mean_b - mean_a
    m2_a = m2 - m2_b - delta**2 * (n_a * n_b / n)
    return n_a, mean_a, m2_a


def stats_from_moments(n: int, mean, m2, lo: float, hi: float) -> DataStats:
    """DataStats from per-channel (count, mean [C], m2 [C]) in float64."""
    mean = torch.as_tensor(mean, dtype=torch.float64)
    m2 = torch.as_tensor(m2, dtype=torch.float64)
    tot_n, tot_mean, tot_m2 = n, mean[0], m2[0]
    for c in range(1, mean.shape[0]):
        tot_n, tot_mean, tot_m2 = merge_moments(tot_n, tot_mean, tot_m2, n, mean[c], m2[c])
    std = float(torch.sqrt(torch.clamp(tot_m2, min=0) / max(tot_n - 1, 1)))
    channel_std = torch.sqrt(torch.clamp(m2, min=0) / max(n - 1, 1))
    return DataStats(count=n, minimum=lo, maximum=hi, mean=float(tot_mean), std=std,
                     channel_mean=tuple(mean.tolist()), channel_std=tuple(channel_std.tolist()))


def data_moments(x, chunk: int = 2048):
    """Per-channel (count, mean, m2, min, max) of x [N, C, ...] or [N, D], a tensor or an
    ``Items`` (read in chunks: nothing the size of the set is held)."""
    if x.shape[0] == 0:
        raise ValueError("no data")
    channels = x.shape[1] if x.dim() > 1 else 1
    n = 0
    mean = torch.zeros(channels, dtype=torch.float64)
    m2 = torch.zeros(channels, dtype=torch.float64)
    lo, hi = float("inf"), float("-inf")
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk].to(torch.float64)
        part = part.reshape(part.shape[0], channels, -1).transpose(0, 1).reshape(channels, -1)
        nb = part.shape[1]
        mean_b = part.mean(1)
        m2_b = ((part - mean_b[:, None]) ** 2).sum(1)
        n, mean, m2 = (nb, mean_b, m2_b) if n == 0 else merge_moments(n, mean, m2, nb, mean_b, m2_b)
        lo, hi = min(lo, float(part.min())), max(hi, float(part.max()))
    return n, mean, m2, lo, hi


def data_statistics(x: Tensor, chunk: int = 2048) -> DataStats:
    """Statistics of x [N, C, ...] (images) or [N, D] (vectors: one 'channel' per coordinate);
    x may be an ``Items`` (data/items.py), read in chunks."""
    return stats_from_moments(*data_moments(x, chunk))



def subset_statistics(x, items: int, seed: int = 0, groups: int = 10) -> DataStats:
    """Statistics of a seeded random subset of ``items`` items of x, with the standard error
    of the std estimated from ``groups`` disjoint parts of the subset (their spread / sqrt(g))."""
    import dataclasses

    import numpy as np

    n = x.shape[0]
    pick = np.sort(np.random.default_rng(seed).choice(n, size=min(items, n), replace=False))
    part = x.subset(pick) if hasattr(x, "subset") else x[torch.from_numpy(pick)]
    whole = data_statistics(part)
    stds = [data_statistics(part.subset(g) if hasattr(part, "subset") else part[torch.from_numpy(g)]
                            ).std for g in np.array_split(np.arange(len(pick)), groups) if len(g) > 1]
    error = float(np.std(stds, ddof=1) / np.sqrt(len(stds))) if len(stds) > 1 else float("nan")
    return dataclasses.replace(whole, subset=len(pick), std_error=error)
