"""Built-in precision policies (seed 001 §12)."""

from __future__ import annotations

import torch

from difftk.hookspecs import hookimpl
from difftk.train.precision import Precision


def bf16_is_native(device: torch.device) -> bool:
    """True where bf16 matmuls run at speed: CUDA devices that support bf16."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


class FP32(Precision):
    """Everything in fp32."""

    name = "fp32"

    def autocast_dtype(self, device):
        return None


class BF16(Precision):
    """bf16 autocast, no loss scaling; fp32 master weights (seed 001 §12.1)."""

    name = "bf16"

    def autocast_dtype(self, device):
        return torch.bfloat16


class Auto(Precision):
    """bf16 where the hardware has it, else fp32 (CPUs without native bf16 run it ~100x slower)."""

    name = "auto"

    def autocast_dtype(self, device):
        return torch.bfloat16 if bf16_is_native(device) else None


@hookimpl
def register_precision(register):
    for cls in (FP32, BF16, Auto):
        register(cls)
