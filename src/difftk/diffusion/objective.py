"""The training objective: EDM's loss skeleton written once (DESIGN.md).

Draw the noise level, add noise, denoise, compare with the target, weight, reduce.
Each step is a named part; nothing here knows which schedule or target is in use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from difftk.diffusion.levels import Levels, broadcast
from difftk.diffusion.loss import Loss, LossInputs
from difftk.diffusion.noise_sampling import NoiseSampler
from difftk.diffusion.pixel_range import UNIT_RANGE, PixelRange
from difftk.diffusion.schedule import Schedule
from difftk.diffusion.target import Target
from difftk.diffusion.variance import Variance
from difftk.diffusion.weighting import Weighting


@dataclass
class Objective:
    """The loss of a denoiser's parts: ``target`` is bound to ``schedule`` (the Denoiser
    binds it; ``for_denoiser`` takes the denoiser's own)."""

    schedule: Schedule
    target: Target
    variance: Variance
    weighting: Weighting
    noise_sampling: NoiseSampler
    loss: Loss
    pixel_range: PixelRange = UNIT_RANGE  # where the data's pixels lie (the decoder's bins)

    def __post_init__(self):
        if self.target.schedule is not self.schedule:
            raise ValueError("the objective's target must be bound to its schedule "
                             "(Target.bind; a Denoiser binds its own)")

    @classmethod
    def for_denoiser(cls, denoiser, weighting: Weighting, noise_sampling: NoiseSampler,
                     loss: Loss) -> Objective:
        """The objective that trains ``denoiser``: its schedule, bound target, variance and
        pixel range."""
        return cls(denoiser.schedule, denoiser.target, denoiser.variance, weighting,
                   noise_sampling, loss, denoiser.pixel_range or UNIT_RANGE)

    def __call__(self, denoiser, x0: Tensor, labels: Tensor | None,
                 generator: torch.Generator, levels: Levels | None = None,
                 eps: Tensor | None = None, augment_labels: Tensor | None = None
                 ) -> tuple[Tensor, Levels]:
        """Per-sample losses [B] (fp32) and the levels drawn (levels and noise not given are
        drawn from ``generator``); ``augment_labels`` describe how x0 was augmented (EDM's
        augmentation labels, passed to the network)."""
        n = x0.shape[0]
        if levels is None:
            levels = self.noise_sampling.sample(n, self.schedule, generator, x0.device)
        levels = levels.to(x0.device)
        if eps is None:
            eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = broadcast(levels.alpha, x0) * x0 + broadcast(levels.sigma, x0) * eps
        prediction = (denoiser(x_t, levels, labels) if augment_labels is None else
                      denoiser(x_t, levels, labels, augment_labels=augment_labels))
        weight = self.weighting.on_target(levels, self.target, self.schedule)
        inputs = LossInputs(pred=prediction.pred.float(),
                            target=self.target.value(x0, eps, levels).float(),
                            weight=weight.float(), x0=x0, x_t=x_t, eps=eps, levels=levels,
                            schedule=self.schedule, parameterization=self.target,
                            variance=self.variance, extra=prediction.extra,
                            pixel_range=self.pixel_range)
        per_sample = self.loss(inputs)
        if prediction.log_variance is not None:
            # Learned uncertainty (EDM2 §5, Kendall & Gal 2018): l / e^u + u, per sample.
            u = prediction.log_variance.to(per_sample.dtype)
            per_sample = per_sample * torch.exp(-u) + u
        if levels.weight is not None:
            # Importance sampling (seed 001 §5.2): E_p[l] = E_q[(p / q) l], whatever the loss.
            per_sample = per_sample * levels.weight.to(per_sample.dtype)
        return per_sample, levels
