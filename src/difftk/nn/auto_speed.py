"""What ``train.compile = "auto"`` and ``model.channels_last = "auto"`` choose, per device.

The rule is what ``difftk bench`` measured on each kind of device (docs/performance.md,
"CPU: channels_last and torch.compile"): on the CPU, NHWC tensors let oneDNN run the
convolutions without reordering (digits U-Net, eager: training step 0.85x, forward 0.72x
of NCHW's time), and torch.compile's C++ backend fuses GroupNorm, SiLU and the elementwise
tails (training step 0.71x, forward 0.50x) for a one-off compile of one to three minutes
on 2 cores. On CUDA neither is switched on by "auto" until benchmarks/gpu_bench.sh has
measured them there (its channels_last and compile rows); ``true`` forces either anywhere.
"""

from __future__ import annotations

from typing import Literal

import torch

Auto = Literal["auto"]
AUTO_DEVICES = {"compile": ("cpu",), "channels_last": ("cpu",)}


def chosen(setting: bool | str, switch: str, device: torch.device | str) -> bool:
    """Whether ``switch`` ("compile" or "channels_last") is on for ``setting`` on ``device``."""
    if setting == "auto":
        return torch.device(device).type in AUTO_DEVICES[switch]
    return bool(setting)


def maybe_compile(module, setting: bool | str, device: torch.device | str):
    """``torch.compile(module)`` where ``setting`` chooses it on ``device``, else ``module``."""
    return torch.compile(module) if chosen(setting, "compile", device) else module
