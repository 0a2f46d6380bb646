"""What ``train.compile = "auto"`` and ``model.channels_last = "auto"`` choose, per device.

The rule is what a committed benchmark measured on each kind of device. On the CPU,
benchmarks/cpu_switches.py (benchmarks/results/cpu_switches.json; digits U-Net, one thread):
channels_last 1.09x the eager NCHW training step, torch.compile 0.89x after a 105 s compile,
so neither is switched on. On CUDA nothing until benchmarks/gpu_bench.sh's channels_last and
compile rows are committed (docs/performance.md). ``true`` forces either anywhere.
"""

from __future__ import annotations

from typing import Literal

import torch

Auto = Literal["auto"]
AUTO_DEVICES: dict[str, tuple[str, ...]] = {"compile": (), "channels_last": ()}


def chosen(setting: bool | str, switch: str, device: torch.device | str) -> bool:
    """Whether ``switch`` ("compile" or "channels_last") is on for ``setting`` on ``device``."""
    if setting == "auto":
        return torch.device(device).type in AUTO_DEVICES[switch]
    return bool(setting)


def maybe_compile(module, setting: bool | str, device: torch.device | str):
    """``torch.compile(module)`` where ``setting`` chooses it on ``device``, else ``module``."""
    return torch.compile(module) if chosen(setting, "compile", device) else module
