"""Loss weightings w(SNR): how much each noise level counts (seed 001 §7).

A weighting acts on the per-sample MSE of the trained target (seed 001 eq. 39) when
``relative_to = "target"``. With ``relative_to = "x0"`` the formula is the weight on
the x0-MSE, and the objective divides by the target's error factor, so that for
eps-prediction min(SNR, gamma) becomes min(SNR, gamma) / SNR (the Min-SNR paper).
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from torch import Tensor

from difftk.component import Component
from difftk.diffusion.levels import Levels


class Weighting(Component):
    """A weight on the per-sample loss as a function of SNR."""

    family: ClassVar[str] = "weights"

    relative_to: Literal["target", "x0"] = Field(
        "target", description='the MSE the formula weights: the trained target\'s or x0\'s')

    def __call__(self, snr: Tensor) -> Tensor:
        """w(SNR), elementwise."""
        raise NotImplementedError

    def on_target(self, levels: Levels, target) -> Tensor:
        """The weight to apply to the trained target's per-sample MSE."""
        w = self(levels.snr.double()).float()
        if self.relative_to == "x0":
            w = w / target.x0_error_factor(levels)
        return w
