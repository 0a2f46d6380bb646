"""Numeric policies (seed 001 §12): which dtype autocast uses and whether the loss is scaled.

Master weights and optimizer state stay fp32 under every policy; the loss is reduced
in fp32.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar

import torch

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
