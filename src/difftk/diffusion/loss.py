"""Per-sample training losses; the objective calls one with everything it computed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from difftk.component import Component
from difftk.diffusion.levels import Levels


@dataclass
class LossInputs:
    """What one training batch produced: prediction, target, weight and the raw pieces."""

    pred: Tensor
    target: Tensor
    weight: Tensor
    x0: Tensor
    x_t: Tensor
    eps: Tensor
    levels: Levels
    extra: Tensor | None = None
    context: Any = None


class Loss(Component):
    """Turns a batch's predictions into one loss value per sample."""

    family: ClassVar[str] = "losses"
    # True for losses whose value depends on (and so trains) a learned variance.
    trains_variance: ClassVar[bool] = False

    def __call__(self, inputs: LossInputs) -> Tensor:
        raise NotImplementedError
