"""Where 8-bit pixels lie in the space the network sees: the data's value range.

A data set scales pixels p in [0, 1] to x = (p - mean) / std per channel (data.mean,
data.std; seed 004 trains on [0, 1] = mean 0, std 1, DDPM on [-1, 1] = mean 0.5, std 0.5).
Black and white are then lo = -mean / std and hi = (1 - mean) / std, and the 256 levels of a
channel are evenly spaced between them. Everything that reads pixel values in the network's
space takes them from here, not from an assumed [-1, 1]: pixel metrics (to [0, 1]), the
discretized decoder's bins (seed 003 Algorithm 2), clip_denoised, sample grids and the
Inception input's 8-bit quantisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PixelRange:
    """Per-channel black and white levels (one entry each: the same for every channel)."""

    lo: tuple[float, ...] = (-1.0,)
    hi: tuple[float, ...] = (1.0,)

    @classmethod
    def from_scaling(cls, mean, std) -> PixelRange:
        """The range of x = (p - mean) / std for p in [0, 1]."""
        mean = [float(m) for m in mean]
        std = [float(s) for s in std]
        lo = tuple(-m / s for m, s in zip(mean, std, strict=True))
        hi = tuple((1 - m) / s for m, s in zip(mean, std, strict=True))
        if len(set(lo)) == 1 and len(set(hi)) == 1:
            lo, hi = lo[:1], hi[:1]
        return cls(lo, hi)

    def bounds(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """(lo, hi) shaped to broadcast against images [B, C, ...] like ``like``."""
        shape = (1, -1, *[1] * (like.dim() - 2)) if len(self.lo) > 1 else (1,) * like.dim()
        lo = torch.tensor(self.lo, dtype=like.dtype, device=like.device).reshape(shape)
        hi = torch.tensor(self.hi, dtype=like.dtype, device=like.device).reshape(shape)
        return lo, hi

    def to_unit(self, x: Tensor) -> Tensor:
        """Pixels p = (x - lo) / (hi - lo): 0 black, 1 white (not clamped)."""
        lo, hi = self.bounds(x)
        return (x - lo) / (hi - lo)

    def clamp(self, x: Tensor) -> Tensor:
        lo, hi = self.bounds(x)
        return torch.maximum(torch.minimum(x, hi), lo)

    def half_bin(self, like: Tensor, bins: int = 256) -> Tensor:
        """Half the spacing of the ``bins`` levels, (hi - lo) / (2 (bins - 1))."""
        lo, hi = self.bounds(like)
        return (hi - lo) / (2 * (bins - 1))


UNIT_RANGE = PixelRange()  # [-1, 1], DDPM's and EDM's scaling (mean = std = 0.5)
