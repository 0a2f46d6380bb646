"""The denoiser: architecture + target (+ preconditioning) + schedule, as samplers see it.

``forward`` gives the target estimate a loss compares; ``x0`` and ``eps`` turn it into
the forms samplers use; ``edm`` is D(x; sigma) in EDM's coordinates x = x_t / alpha.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from difftk.diffusion.levels import Levels, broadcast


@dataclass
class Prediction:
    pred: Tensor  # the target estimate
    extra: Tensor | None  # the variance channels when the variance is learned


class Denoiser(nn.Module):
    def __init__(self, net: nn.Module, schedule, target, variance):
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.target = target.bind(schedule)  # targets may read the schedule's table
        self.variance = variance

    def forward(self, x_t: Tensor, levels: Levels, labels: Tensor | None = None) -> Prediction:
        x_in, time = self.target.net_input(x_t, levels, self.schedule)
        out = self.net(x_in, time.float(), labels)
        extra = None
        if self.variance.learned:
            out, extra = out.chunk(2, dim=1)
        out = out.float()  # the skip sum and conversions run in fp32 (seed 001 §12.4)
        return Prediction(self.target.prediction(out, x_t, levels), extra)

    def x0(self, x_t: Tensor, levels: Levels, labels: Tensor | None = None) -> Tensor:
        return self.target.to_x0(self(x_t, levels, labels).pred, x_t, levels)

    def x0_and_extra(self, x_t, levels, labels=None) -> tuple[Tensor, Tensor | None]:
        p = self(x_t, levels, labels)
        return self.target.to_x0(p.pred, x_t, levels), p.extra

    def edm(self, x: Tensor, sigma_edm: Tensor, labels: Tensor | None = None) -> Tensor:
        """D(x; sigma): the x0 estimate for x = x0 + sigma eps (Karras et al. 2022)."""
        sigma_edm = sigma_edm.reshape(-1).expand(x.shape[0]).to(torch.float64)
        levels = self.schedule.levels_from_sigma_edm(sigma_edm).to(x.device)
        x_t = (broadcast(levels.alpha, x) * x).float()
        return self.x0(x_t, levels, labels).to(x.dtype)
