"""fp32 islands under autocast (seed 001 §12.2 and §12.4).

Normalisation statistics, softmax / attention scores, the noise embedding and the output
head are numerically fragile: they run in fp32 whatever dtype autocast uses elsewhere.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from difftk.nn.rounded_matmuls import paused_rounding, rounding_active

AUTOCAST_DEVICES = {"cpu", "cuda", "xpu", "mps"}


def fp32_region(x: Tensor):
    """A context that switches autocast off on ``x``'s device (a no-op on meta tensors, and
    where autocast is off already: entering torch.autocast costs tens of microseconds of
    host time, more than a small GroupNorm, and a network enters one per norm), and pauses
    emulated low precision (nn/rounded_matmuls.py)."""
    if rounding_active():
        return paused_rounding()
    kind = x.device.type
    if kind not in AUTOCAST_DEVICES or not torch.is_autocast_enabled(kind):
        return contextlib.nullcontext()
    return torch.autocast(kind, enabled=False)


def already_fp32(x: Tensor) -> bool:
    """Whether ``x`` is fp32 with autocast off on its device: an fp32 island then has
    nothing to switch or cast (and skips the host time of doing so)."""
    kind = x.device.type
    return x.dtype == torch.float32 and (kind not in AUTOCAST_DEVICES
                                         or not torch.is_autocast_enabled(kind))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with statistics in fp32; the result keeps the input's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        if already_fp32(x):
            return super().forward(x)
        with fp32_region(x):
            return super().forward(x.float()).to(x.dtype)


class LayerNorm32(nn.LayerNorm):
    """LayerNorm with statistics in fp32; the result keeps the input's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        if already_fp32(x):
            return super().forward(x)
        with fp32_region(x):
            return super().forward(x.float()).to(x.dtype)


class RMSNorm32(nn.RMSNorm):
    """RMSNorm in fp32 (used for QK-normalisation); the result keeps the input's dtype."""

    def forward(self, x: Tensor) -> Tensor:
        if already_fp32(x):
            return super().forward(x)
        with fp32_region(x):
            return super().forward(x.float()).to(x.dtype)


def group_norm(channels: int, groups: int = 32) -> GroupNorm32:
    """GroupNorm with ``groups`` groups, or the largest divisor of ``channels`` below it."""
    return GroupNorm32(_largest_divisor(channels, groups), channels)


def _largest_divisor(n: int, at_most: int) -> int:
    return max(g for g in range(1, min(n, at_most) + 1) if n % g == 0)
