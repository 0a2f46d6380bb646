"""The variance of the reverse step p(x_{t-1} | x_t) (seed 003 ch. 3 and 6)."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from difftk.component import Component


class Variance(Component):
    """Log-variance of a reverse step from its beta, its posterior beta_tilde and,
    for learned variances, the network's extra channels."""

    family: ClassVar[str] = "variance"
    learned: ClassVar[bool] = False

    def log_variance(self, beta: Tensor, beta_tilde: Tensor, extra: Tensor | None) -> Tensor:
        raise NotImplementedError
