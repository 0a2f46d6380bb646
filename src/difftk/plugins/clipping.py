"""Built-in gradient clipping rules (seed 001 §10).

Every rule returns the global gradient norm before and after clipping (fp32, on the
device, no host sync) so the trainer can log both and the fraction of steps clipped.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from difftk.hookspecs import hookimpl
from difftk.optim.clipping import Clipping, global_grad_norm, module_groups


def _with_grad(params) -> list[torch.nn.Parameter]:
    return [p for p in params if p.grad is not None]


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
        params = _with_grad(params)
        norm = global_grad_norm(params)
        if not params:
            return norm, norm
        scale = torch.clamp(self.max_norm / (norm + 1e-6), max=1.0)
        torch._foreach_mul_([p.grad for p in params], scale.to(params[0].grad.device))
        return norm, norm * scale


class PerLayer(Clipping):
    """Clip each layer's gradient to norm max_norm on its own: g_l <- g_l tau / max(tau, ||g_l||).

    Seed 001 §10.2. ``per = "parameter"`` treats each weight tensor as a layer;
    ``per = "module"`` takes the parameters a module owns directly (weight and bias
    together) as one layer.
    """

    name = "per_layer"
    max_norm: float = Field(1.0, gt=0, description="largest allowed norm of one layer's gradient")
    per: Literal["parameter", "module"] = Field(
        "parameter", description="what a layer is: one parameter tensor, or one module's own parameters")

    def _clip_groups(self, groups: list[list[torch.nn.Parameter]]):
        params = [p for g in groups for p in g]
        before = global_grad_norm(params)
        for group in groups:
            grads = [p.grad for p in group]
            norm = torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(grads)]))
            scale = self.max_norm / torch.clamp(norm, min=self.max_norm)
            torch._foreach_mul_(grads, scale.to(grads[0].dtype))
        return before, global_grad_norm(params)

    def clip(self, params):
        return self._clip_groups([[p] for p in _with_grad(params)])

    def clip_model(self, model):
        if self.per == "parameter":
            return self.clip(model.parameters())
        groups = [[p for p in g if p.grad is not None] for g in module_groups(model)]
        return self._clip_groups([g for g in groups if g])


class Value(Clipping):
    """Clamp every gradient element to [-clip_value, clip_value] (seed 001 §10.3)."""

    name = "value"
    clip_value: float = Field(0.1, gt=0, description="largest allowed magnitude of one gradient element")

    def clip(self, params):
        params = _with_grad(params)
        before = global_grad_norm(params)
        torch._foreach_clamp_min_([p.grad for p in params], -self.clip_value)
        torch._foreach_clamp_max_([p.grad for p in params], self.clip_value)
        return before, global_grad_norm(params)


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """Norm per output unit (over every dim but the first); whole-tensor norm for vectors.

    Brock et al. 2021 (NFNets), "unit-wise" AGC: a unit is one row of a weight matrix
    or one output channel of a convolution kernel; biases and gains count as one unit.
    """
    x = x.float()
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)


class AGC(Clipping):
    """Adaptive gradient clipping: ||g_u|| <= lambda max(||w_u||, eps), per unit (Brock et al. 2021).

    Seed 001 §10.4 states it per layer; NFNets apply it per unit (row of a weight
    matrix, output channel of a kernel): g_u <- g_u lambda max(||w_u||, eps) / ||g_u||
    where the ratio is exceeded. ``eps`` keeps zero-initialised weights trainable.
    """

    name = "agc"
    clipping: float = Field(0.01, gt=0, description="lambda: largest allowed ||g|| / ||w|| per unit")
    eps: float = Field(1e-3, gt=0, description="floor on the weight norm")
    unitwise: bool = Field(True, description="per unit (NFNets); false: per parameter tensor")

    def clip(self, params):
        params = _with_grad(params)
        before = global_grad_norm(params)
        for p in params:
            if self.unitwise:
                w_norm, g_norm = unitwise_norm(p.detach()), unitwise_norm(p.grad)
            else:
                w_norm = torch.linalg.vector_norm(p.detach().float())
                g_norm = torch.linalg.vector_norm(p.grad.float())
            max_norm = torch.clamp(w_norm, min=self.eps) * self.clipping
            scale = torch.where(g_norm > max_norm, max_norm / torch.clamp(g_norm, min=1e-12), 1.0)
            p.grad.mul_(scale.to(p.grad.dtype))
        return before, global_grad_norm(params)


@hookimpl
def register_clipping(register):
    for cls in (NoClipping, GlobalNorm, PerLayer, Value, AGC):
        register(cls)
