"""The variance of the reverse step p(x_{t-1} | x_t) (seed 003 ch. 3, 4 and 6).

``log_variance(beta, beta_tilde, extra)`` is elementwise: beta is the step's forward
variance, beta_tilde its posterior variance q(x_{t-1} | x_t, x0), extra the network's
variance channels (learned variances only). Callers shape beta and beta_tilde to broadcast
against extra (the DDPM sampler passes scalars, the VLB per-sample [B, 1, ...] tensors).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from difftk.component import Component
from difftk.diffusion.table_rule import TableNeed, UsesTable


class Variance(Component, UsesTable):
    """Log-variance of a reverse step from its beta, its posterior beta_tilde and,
    for learned variances, the network's extra channels."""

    family: ClassVar[str] = "variance"
    learned: ClassVar[bool] = False

    def log_variance(self, beta: Tensor, beta_tilde: Tensor, extra: Tensor | None) -> Tensor:
        raise NotImplementedError

    def table_need(self) -> TableNeed | None:
        if not self.learned:
            return None
        return TableNeed("name", "lives between beta_tilde and beta of the steps of",
                         "a fixed variance")

    def check(self, parts):
        loss = parts.get("loss")
        if self.learned and loss is not None and not getattr(loss, "trains_variance", False):
            return [("name", f'the loss "{loss.name}" sends no gradient to the variance '
                     f'channels, so "{self.name}" would sample with an untrained variance; '
                     'use loss "vlb" or "hybrid", or a fixed variance')]
        return []
