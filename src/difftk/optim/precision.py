"""Numeric policies (seed 001 §12): which dtype autocast uses and whether the loss is scaled.

Master weights and optimizer state stay fp32 under every policy (seed 001 §12.2,
"Optimizer Update"); the loss is reduced in fp32 by the trainer; gradients are unscaled
before clipping (seed 001 §12.3). The fp32 islands of seed 001 §12.4 (normalisation,
softmax, exp/log, reductions, loss, gradient norms) are kept by the architectures, the
objective and the gradient-norm code, whatever the policy.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import torch
from torch import nn

from difftk.component import Component


class Precision(Component):
    """A numeric policy for the forward and backward passes."""

    family: ClassVar[str] = "precision"

    def autocast_dtype(self, device: torch.device) -> torch.dtype | None:
        """The low-precision dtype to autocast to on ``device``; None runs fp32."""
        raise NotImplementedError

    def autocast(self, device: torch.device):
        dtype = self.autocast_dtype(device)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def make_scaler(self, device: torch.device):
        """A gradient scaler for policies that need loss scaling; None otherwise."""
        return None

    def prepare(self, device: torch.device, model: nn.Module) -> None:
        """Set up ``device`` (backend flags) and ``model`` before training.

        Raises a DifftkError with one sentence where the policy cannot run on ``device``.
        """
