"""The denoiser: architecture + target (+ preconditioning) + schedule, as samplers see it.

``forward`` gives the target estimate a loss compares, the variance channels where the
variance is learned, and the loss's log-variance where the weighting learns it; the target
turns the estimate into x0, eps, v, the score or the posterior mean. The denoiser binds its
target to its schedule, once: the objective and the losses use that bound target
(``denoiser.target``). It also knows where the data's pixels lie (``pixel_range``), which
clip_denoised clamps to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from difftk.diffusion.levels import Levels
from difftk.diffusion.pixel_range import UNIT_RANGE, PixelRange


@dataclass
class Prediction:
    pred: Tensor  # the target estimate
    extra: Tensor | None  # the variance channels when the variance is learned
    log_variance: Tensor | None = None  # the loss's learned log-variance u per sample [B]


class Denoiser(nn.Module):
    def __init__(self, net: nn.Module, schedule, target, variance,
                 uncertainty: nn.Module | None = None,
                 pixel_range: PixelRange | None = UNIT_RANGE):
        super().__init__()
        self.net = net
        self.schedule = schedule
        self.target = target.bind(schedule)  # the run's one binding (targets may read the table)
        self.variance = variance
        # The weighting's learned loss log-variance (EDM2), trained and saved with the network.
        self.uncertainty = uncertainty
        # Where the data's pixels lie (clip_denoised clamps x0 to it); None for latents.
        self.pixel_range = pixel_range

    def forward(self, x_t: Tensor, levels: Levels, labels: Tensor | None = None,
                augment_labels: Tensor | None = None) -> Prediction:
        pre = self.target.preconditioning(levels)  # EDM's scalings: once per forward pass
        # Augmentation labels only where given (training with [augment]): None means zeros.
        augment = {} if augment_labels is None else {"augment_labels": augment_labels}
        # fp32 at least: the skip sum and conversions run in fp32 (seed 001 §12.4), float64
        # for a float64 input (reference comparisons)
        wide = torch.promote_types(x_t.dtype, torch.float32)
        out = self.net(pre.net_input(x_t), pre.noise.to(wide), labels, **augment)
        extra = None
        if self.variance.learned:
            out, extra = out.chunk(2, dim=1)
        out = out.to(torch.promote_types(out.dtype, wide))
        log_variance = None if self.uncertainty is None else self.uncertainty(levels).float()
        return Prediction(pre.prediction(out, x_t), extra, log_variance)

    def x0_and_extra(self, x_t, levels, labels=None) -> tuple[Tensor, Tensor | None]:
        """The x0 estimate and the variance channels (None unless learned)."""
        p = self(x_t, levels, labels)
        return self.target.to_x0(p.pred, x_t, levels), p.extra
