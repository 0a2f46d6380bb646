"""EDM2's magnitude-preserving layers (Karras et al. 2024b, "Analyzing and Improving the
Training Dynamics of Diffusion Models", §3 and Appendix B.2; equations numbered as there).

Each layer keeps unit-variance inputs at unit variance in expectation, so activations and
weights cannot drift in magnitude during training:

- ``normalize``: w / ||w|| per output channel, with EDM2's eps guard (eq. 45 context).
- ``MPConv``: a convolution (or, with an empty kernel, a linear layer) whose weight is
  normalised twice: in place after each training step's forward ("forced weight
  normalization", §3.6, Algorithm 1) and again in the forward ("traditional"), then scaled
  by 1 / sqrt(fan_in) (eq. 46), with no bias.
- ``MPFourier``: Fourier features cos(2 pi (f x + phi)) sqrt(2) of the noise level (eq. 75).
- ``mp_silu``: SiLU(x) / 0.596, unit variance for unit-normal x (eq. 81).
- ``mp_sum``: ((1 - t) a + t b) / sqrt((1 - t)^2 + t^2) (eq. 88).
- ``mp_cat``: concatenation with both halves rescaled to keep their share of the
  magnitude (eq. 103).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def normalize(x: Tensor, dim=None, eps: float = 1e-4) -> Tensor:
    """x / (eps + ||x|| sqrt(n_sub / n)), norms over ``dim`` (default: all but the first)."""
    if dim is None:
        dim = list(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = torch.add(eps, norm, alpha=math.sqrt(norm.numel() / x.numel()))
    return x / norm.to(x.dtype)


class MPConv(nn.Module):
    """EDM2's magnitude-preserving convolution (kernel ``()`` for a linear layer)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: tuple[int, ...]):
        super().__init__()
        self.out_channels = out_channels
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, *kernel))

    def forward(self, x: Tensor, gain: float | Tensor = 1.0) -> Tensor:
        w = self.weight.to(torch.float32)
        if self.training:
            with torch.no_grad():
                self.weight.copy_(normalize(w))  # forced weight normalization (§3.6)
        w = normalize(w)  # traditional weight normalization
        w = w * (gain / math.sqrt(w[0].numel()))  # magnitude-preserving scaling (eq. 46)
        w = w.to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return nn.functional.conv2d(x, w, padding=(w.shape[-1] // 2,))


class MPFourier(nn.Module):
    """Fourier features of a scalar: cos(x f + phi) sqrt(2), f ~ 2 pi N(0, bandwidth^2),
    phi ~ 2 pi U(0, 1) (fixed buffers)."""

    def __init__(self, num_channels: int, bandwidth: float = 1.0):
        super().__init__()
        self.register_buffer("freqs", 2 * math.pi * torch.randn(num_channels) * bandwidth)
        self.register_buffer("phases", 2 * math.pi * torch.rand(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        y = x.to(torch.float32).ger(self.freqs.to(torch.float32))
        y = y + self.phases.to(torch.float32)
        return (y.cos() * math.sqrt(2)).to(x.dtype)


def mp_silu(x: Tensor) -> Tensor:
    return nn.functional.silu(x) / 0.596


def mp_sum(a: Tensor, b: Tensor, t: float = 0.5) -> Tensor:
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: Tensor, b: Tensor, dim: int = 1, t: float = 0.5) -> Tensor:
    na, nb = a.shape[dim], b.shape[dim]
    c = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    wa = c / math.sqrt(na) * (1 - t)
    wb = c / math.sqrt(nb) * t
    return torch.cat([wa * a, wb * b], dim=dim)
