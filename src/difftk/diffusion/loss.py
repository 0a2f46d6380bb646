"""Per-sample training losses; the objective calls one with everything it computed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from difftk.component import Component
from difftk.diffusion.levels import Levels
from difftk.diffusion.pixel_range import UNIT_RANGE, PixelRange
from difftk.diffusion.schedule import Schedule
from difftk.diffusion.table_rule import UsesTable
from difftk.diffusion.target import Target
from difftk.diffusion.variance import Variance


@dataclass
class LossInputs:
    """What one training batch produced: prediction, regression target and the weighting's
    weight, the raw pieces, and the parts that relate them.

    ``weight`` is the weighting's w alone: the noise sampler's importance weight
    (``levels.weight``) multiplies the per-sample loss in the objective, once, whatever the
    loss. ``parameterization`` is the run's target bound to ``schedule`` (it turns ``pred``
    into x0, eps or the posterior mean); ``variance`` gives the reverse step's variance.
    """

    pred: Tensor
    target: Tensor
    weight: Tensor
    x0: Tensor
    x_t: Tensor
    eps: Tensor
    levels: Levels
    schedule: Schedule
    parameterization: Target
    variance: Variance
    extra: Tensor | None = None
    pixel_range: PixelRange = UNIT_RANGE  # the data's 8-bit levels (the decoder's bins)


class Loss(Component, UsesTable):
    """Turns a batch's predictions into one loss value per sample."""

    family: ClassVar[str] = "losses"
    # True for losses whose value depends on (and so trains) a learned variance.
    trains_variance: ClassVar[bool] = False

    def __call__(self, inputs: LossInputs) -> Tensor:
        raise NotImplementedError
