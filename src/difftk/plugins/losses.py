"""Built-in training losses."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from difftk.diffusion.loss import Loss
from difftk.hookspecs import hookimpl


class MSE(Loss):
    """Weighted squared error of the target, per-pixel mean (seed 004 Coding I.5-7) or sum."""

    name = "mse"
    reduction: Literal["mean", "sum"] = Field(
        "mean", description="over the pixels of one sample: mean (default) or sum")

    def __call__(self, inputs):
        sq = (inputs.pred - inputs.target).square().flatten(1)
        per_sample = sq.mean(1) if self.reduction == "mean" else sq.sum(1)
        return inputs.weight * per_sample


@hookimpl
def register_losses(register):
    register(MSE)
