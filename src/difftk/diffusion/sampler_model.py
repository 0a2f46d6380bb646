"""The denoiser as a sampler calls it (the one model protocol of every sampler): class labels
bound, classifier-free guidance or autoguidance applied, network evaluations counted.

Classifier-free guidance (Ho & Salimans 2022) combines a conditional and an unconditional
(null-label) prediction: D = D_u + s (D_c - D_u). Seed 001 §12.4 writes the same rule as
eps = eps_c + w (eps_c - eps_u), so w = s - 1; s = 1 is plain conditional sampling and
s = 0 unconditional. At a fixed x_t the map x0 -> eps is affine, and an affine
combination whose weights sum to one commutes with it, so guiding x0 is guiding eps (or
v, or the score). The combination runs in fp32 or wider (seed 001 §12.4: the subtraction
and the amplification by s magnify rounding error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from difftk.diffusion.grids import Level
from difftk.diffusion.levels import Levels
from difftk.diffusion.pixel_range import UNIT_RANGE
from difftk.diffusion.variance import Variance


def cfg_combine(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """D_u + s (D_c - D_u), computed in fp32 or wider whatever the inputs' precision."""
    dtype = torch.promote_types(torch.promote_types(cond.dtype, uncond.dtype), torch.float32)
    c, u = cond.to(dtype), uncond.to(dtype)
    return u + scale * (c - u)


@dataclass
class Denoised:
    """What the model tells a sampler at one level: the x0 estimate (in x_t's dtype) and, for
    ancestral steps, the reverse step's variance (from the network where it is learned)."""

    x0: Tensor
    extra: Tensor | None
    variance: Variance

    def log_variance(self, beta: Tensor, beta_tilde: Tensor) -> Tensor:
        """log sigma^2 of the reverse step whose forward variance is beta and whose posterior
        variance is beta_tilde (seed 003 ch. 3, 6)."""
        return self.variance.log_variance(beta, beta_tilde, self.extra)


def model_dtype(denoiser) -> torch.dtype:
    """float64 for a network held in float64 (a reference comparison keeps every digit),
    else float32: the dtype the network sees its input and noise level in."""
    params = getattr(denoiser, "parameters", None)
    first = next(iter(params()), None) if params is not None else None
    return torch.float64 if first is not None and first.dtype == torch.float64 else torch.float32


class GuidedModel:
    """The one model protocol samplers call: ``model(x_t, level) -> Denoised`` for a batch
    x_t = alpha x0 + sigma eps at one Level, with class labels bound, guidance applied and
    network evaluations counted per sample (``nfe``).

    Guidance D = D_g + s (D - D_g) takes D_g from the unconditional (null-label) prediction
    of the same network (classifier-free guidance, Ho & Salimans 2022), or from ``guide``, a
    smaller or less trained denoiser of the same conditioning (autoguidance, Karras et al.
    2024a, eq. 1). Outside the EDM-sigma interval ``interval`` the scale is 1, one
    evaluation (guidance interval, Kynkaanniemi et al. 2024, eq. 2).
    """

    def __init__(self, denoiser, labels: Tensor | None, guidance: float = 1.0, guide=None,
                 interval: tuple[float, float] = (0.0, math.inf)):
        self.denoiser = denoiser
        self.labels = labels
        self.guidance = float(guidance)
        self.guide = guide
        self.interval = interval
        self.nfe = 0
        self.dtype = model_dtype(denoiser)  # once: the network's dtype does not change

    def clip(self, x0: Tensor) -> Tensor:
        """x0 clamped to the data's pixel range (clip_denoised); unchanged for latents."""
        pixel_range = getattr(self.denoiser, "pixel_range", UNIT_RANGE)
        return x0 if pixel_range is None else pixel_range.clamp(x0)

    def _evaluate(self, denoiser, x_t: Tensor, levels: Levels, labels: Tensor | None):
        self.nfe += 1
        return denoiser.x0_and_extra(x_t, levels, labels)

    def scale_at(self, level: Level) -> float:
        """The guidance scale at ``level``: the sampler's inside the interval, else 1."""
        lo, hi = self.interval
        if level.alpha <= 0:  # pure noise: sigma_edm is infinite
            sigma_edm = math.inf
        else:
            sigma_edm = level.sigma / level.alpha
        return self.guidance if lo <= sigma_edm <= hi else 1.0

    def __call__(self, x_t: Tensor, level: Level) -> Denoised:
        x_in = x_t.to(self.dtype)
        levels = level.batch(x_t.shape[0], x_t.device, self.dtype)
        scale = self.scale_at(level)
        if self.guide is not None:  # autoguidance: both models see the labels
            x0, extra = self._evaluate(self.denoiser, x_in, levels, self.labels)
            if scale != 1.0:
                weak, _ = self._evaluate(self.guide, x_in, levels, self.labels)
                x0 = cfg_combine(x0, weak, scale)
        elif self.labels is None or scale == 0.0:
            x0, extra = self._evaluate(self.denoiser, x_in, levels, None)
        elif scale == 1.0:
            x0, extra = self._evaluate(self.denoiser, x_in, levels, self.labels)
        else:
            cond, extra = self._evaluate(self.denoiser, x_in, levels, self.labels)
            uncond, _ = self._evaluate(self.denoiser, x_in, levels, None)  # two calls
            x0 = cfg_combine(cond, uncond, scale)
        return Denoised(x0.to(x_t.dtype), extra, self.denoiser.variance)
