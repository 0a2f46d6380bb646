"""Built-in gradient clipping rules (seed 001 §10)."""

from __future__ import annotations

import torch
from pydantic import Field

from difftk.hookspecs import hookimpl
from difftk.train.clipping import Clipping, global_grad_norm


class NoClipping(Clipping):
    """No clipping; the gradient norm is still measured."""

    name = "none"

    def clip(self, params):
        norm = global_grad_norm(list(params))
        return norm, norm


class GlobalNorm(Clipping):
    """Scale all gradients by min(1, max_norm / ||g||) (seed 001 §10.1)."""

    name = "global_norm"
    max_norm: float = Field(1.0, gt=0, description="largest allowed global gradient norm")

    def clip(self, params):
        params = [p for p in params if p.grad is not None]
        norm = global_grad_norm(params)
        scale = torch.clamp(self.max_norm / (norm + 1e-6), max=1.0)
        torch._foreach_mul_([p.grad for p in params], scale.to(params[0].grad.device))
        return norm, norm * scale


@hookimpl
def register_clipping(register):
    register(NoClipping)
    register(GlobalNorm)
