"""Gradient clipping rules (seed 001 §10), applied to unscaled gradients."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import Tensor

from difftk.component import Component


def global_grad_norm(params: list[torch.nn.Parameter]) -> Tensor:
    """The L2 norm of all gradients together, in fp32, without a host sync."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


class Clipping(Component):
    """Rescales or clamps gradients in place; reports the global norm before and after."""

    family: ClassVar[str] = "clipping"

    def clip(self, params: Iterable[torch.nn.Parameter]) -> tuple[Tensor, Tensor]:
        raise NotImplementedError
