"""Gradient clipping rules (seed 001 §10), applied to unscaled gradients (seed 001 §12.3)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import Tensor, nn

from difftk.component import Component


def global_grad_norm(params: list[torch.nn.Parameter]) -> Tensor:
    """The L2 norm of all gradients together, in fp32 (seed 001 §12.4), without a host sync."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    norms = torch._foreach_norm(grads)
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def module_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The parameters grouped by the module that owns them directly (a layer's weight and bias)."""
    groups = []
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own:
            groups.append(own)
    return groups


class Clipping(Component):
    """Rescales or clamps gradients in place; reports the global norm before and after."""

    family: ClassVar[str] = "clipping"

    def clip(self, params: Iterable[torch.nn.Parameter]) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def clip_model(self, model: nn.Module) -> tuple[Tensor, Tensor]:
        """Clip the gradients of ``model``; rules that need the module structure override this."""
        return self.clip(model.parameters())
