"""The timestep convention, folded into the first layer of the noise embedding.

difftk's t-space schedules count t = 1..T and the network sees t; diffusers counts the
same steps as k = t - 1 = 0..T-1 and the network sees k. The sinusoidal features of
t = k + s are a rotation of those of k, frequency by frequency (angle s w):

    cos(w (k + s)) = cos(wk) cos(sw) - sin(wk) sin(sw)
    sin(w (k + s)) = sin(wk) cos(sw) + cos(wk) sin(sw)

so a network that read t = k + s through ``W f(t)`` reads k through ``(W R_s) f(k)``.
Folding R_s into the first Linear layer keeps the parameter count and key set of
diffusers' ``UNet2DModel`` and holds for fractional k too. The features are laid out
[cos(w t), sin(w t)] (difftk's SinusoidalEmbedding, diffusers' flip_sin_to_cos = True).
"""

from __future__ import annotations

import torch
from torch import Tensor


def rotation(freqs: Tensor, shift: float) -> Tensor:
    """R_s with f(k + s) = R_s f(k) for features [cos(w k), sin(w k)] (float64)."""
    angle = freqs.to(torch.float64) * shift
    c, s = torch.diag(torch.cos(angle)), torch.diag(torch.sin(angle))
    return torch.cat([torch.cat([c, -s], dim=1), torch.cat([s, c], dim=1)], dim=0)


def shift_first_layer(weight: Tensor, freqs: Tensor, shift: float) -> Tensor:
    """The weight that reads features of k as ``weight`` read the features of k + shift."""
    folded = weight.to(torch.float64) @ rotation(freqs, shift)
    return folded.to(weight.dtype)
