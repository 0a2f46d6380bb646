"""Prediction targets: what the network regresses, as a linear map of (x0, eps).

Every target is T = a x0 + b eps with (a, b) from (alpha, sigma) (seed 000 §2, seed 001
§2), so one pair of formulas turns any prediction back into x0 or eps given x_t:

    x0 = (sigma T - b x_t) / (a sigma - b alpha),   eps = (a x_t - alpha T) / (a sigma - b alpha)

and, at fixed x_t, an error in T is an error in x0 scaled by |a - b alpha / sigma|. A
target may also precondition the network (EDM, seed 001 §8.1) by overriding
``net_input`` and ``prediction``.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from difftk.component import Component
from difftk.diffusion.levels import Levels, broadcast


class Target(Component):
    """What the network regresses, and how its output becomes x0 and eps."""

    family: ClassVar[str] = "targets"

    def coefficients(self, levels: Levels) -> tuple[Tensor, Tensor]:
        """(a, b) with target = a x0 + b eps, each of shape [B]."""
        raise NotImplementedError

    def value(self, x0: Tensor, eps: Tensor, levels: Levels) -> Tensor:
        """The regression target for clean data x0 and noise eps."""
        a, b = self.coefficients(levels)
        return broadcast(a, x0) * x0 + broadcast(b, eps) * eps

    def net_input(self, x_t: Tensor, levels: Levels, schedule) -> tuple[Tensor, Tensor]:
        """What the network sees: its image input and its noise-level conditioning."""
        return x_t, schedule.time_input(levels)

    def prediction(self, out: Tensor, x_t: Tensor, levels: Levels) -> Tensor:
        """The target estimate from the network's raw output."""
        return out

    def _solve(self, pred: Tensor, x_t: Tensor, levels: Levels) -> tuple[Tensor, Tensor]:
        a, b = (broadcast(c, x_t) for c in self.coefficients(levels))
        alpha, sigma = broadcast(levels.alpha, x_t), broadcast(levels.sigma, x_t)
        det = a * sigma - b * alpha
        return (sigma * pred - b * x_t) / det, (a * x_t - alpha * pred) / det

    def to_x0(self, pred: Tensor, x_t: Tensor, levels: Levels) -> Tensor:
        return self._solve(pred, x_t, levels)[0]

    def to_eps(self, pred: Tensor, x_t: Tensor, levels: Levels) -> Tensor:
        return self._solve(pred, x_t, levels)[1]

    def x0_error_factor(self, levels: Levels) -> Tensor:
        """k with ||T_hat - T||^2 = k ||x0_hat - x0||^2 at fixed x_t (seed 003 eq. 5.3, 5.7)."""
        a, b = self.coefficients(levels)
        return (a - b * levels.alpha / levels.sigma) ** 2
