"""The training objective: EDM's loss skeleton written once (DESIGN.md).

Draw the noise level, add noise, denoise, compare with the target, weight, reduce.
Each step is a named part; nothing here knows which schedule or target is in use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from difftk.diffusion.levels import Levels, broadcast
from difftk.diffusion.loss import LossInputs


@dataclass
class Objective:
    schedule: object
    target: object
    weighting: object
    noise_sampling: object
    loss: object

    def __post_init__(self):
        self.target = self.target.bind(self.schedule)  # targets may read the schedule's table

    def __call__(self, denoiser, x0: Tensor, labels: Tensor | None,
                 generator: torch.Generator, levels: Levels | None = None,
                 eps: Tensor | None = None) -> tuple[Tensor, Levels]:
        """Per-sample losses [B] (fp32) and the levels drawn (levels and noise not given are
        drawn from ``generator``)."""
        n = x0.shape[0]
        if levels is None:
            levels = self.noise_sampling.sample(n, self.schedule, generator, x0.device)
        levels = levels.to(x0.device)
        if eps is None:
            eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = broadcast(levels.alpha, x0) * x0 + broadcast(levels.sigma, x0) * eps
        prediction = denoiser(x_t, levels, labels)
        weight = self.weighting.on_target(levels, self.target, self.schedule)
        if levels.weight is not None:
            weight = weight * levels.weight
        inputs = LossInputs(pred=prediction.pred.float(),
                            target=self.target.value(x0, eps, levels).float(),
                            weight=weight.float(), x0=x0, x_t=x_t, eps=eps, levels=levels,
                            extra=prediction.extra, context=denoiser)
        return self.loss(inputs), levels
