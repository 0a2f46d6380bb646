"""A data set's pixel scaling: x = (p - mean) / std per channel for pixels p in [0, 1]."""

from __future__ import annotations

import numpy as np


def pixel_scaling(data_part, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (mean, std) of the data set's pixel scaling; [-1, 1] (0.5, 0.5) when the
    data set states none."""
    mean = np.asarray(getattr(data_part, "mean", [0.5]), dtype=np.float64)
    std = np.asarray(getattr(data_part, "std", [0.5]), dtype=np.float64)
    return np.broadcast_to(mean, (channels,)).copy(), np.broadcast_to(std, (channels,)).copy()
