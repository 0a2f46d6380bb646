"""Noise-level embeddings (DDPM's sinusoidal one, and seed 004's Gaussian Fourier one)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from difftk.nn.fp32 import fp32_region


class SinusoidalEmbedding(nn.Module):
    """Transformer positional features of a scalar (Ho et al. 2020), computed in fp32."""

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        with fp32_region(t):
            x = t.float()[:, None] * self.freqs[None]
            return torch.cat([torch.cos(x), torch.sin(x)], dim=1)


class FourierEmbedding(nn.Module):
    """Gaussian random Fourier features [sin 2 pi W t, cos 2 pi W t] (seed 004 Coding I.1)."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("W", torch.randn(dim // 2) * scale)

    def forward(self, t: Tensor) -> Tensor:
        with fp32_region(t):
            x = t.float()[:, None] * self.W[None] * (2 * math.pi)  # the seed's order of operations
            return torch.cat([torch.sin(x), torch.cos(x)], dim=1)


def make_embedding(kind: str, dim: int, scale: float) -> nn.Module:
    if kind == "fourier":
        return FourierEmbedding(dim, scale)
    return SinusoidalEmbedding(dim)
