"""Dense peak FLOP/s of common accelerators, for the share of peak a run reaches (MFU).

MFU = training FLOPs per image x images/s / dense peak (Chowdhery et al. 2022, PaLM,
appendix B; as torchtitan and fast-DiT report it). The peaks are the vendors' dense
(no 2:4 sparsity) tensor-core figures for bf16 and the plain (non-TF32) fp32 figures:

- A100 SXM: 312 bf16, 19.5 fp32 (NVIDIA A100 datasheet, 2021, table "Specifications").
- H100 SXM: 989 bf16, 67 fp32 (NVIDIA H100 datasheet; the 1,979 figure is with sparsity).
- H200 SXM: 989 bf16, 67 fp32 (NVIDIA H200 datasheet: the H100's compute, more memory).
- L4: 121 bf16, 30.3 fp32 (NVIDIA L4 datasheet; 242 is with sparsity).
- RTX 4090: 165 bf16 (with fp32 accumulate: 82.6 on GeForce cards), 82.6 fp32 (NVIDIA Ada
  Lovelace architecture whitepaper, appendix table 2, fp16/bf16 tensor with fp16 accumulate
  330 sparse / 165 dense).

Names are matched against ``torch.cuda.get_device_name`` (e.g. "NVIDIA H100 80GB HBM3");
PCIe and NVL variants run at lower clocks, so their entries come before the SXM ones.
"""

from __future__ import annotations

import torch

# (substring of the device name, dense bf16 TFLOP/s, fp32 TFLOP/s); first match wins.
PEAK_TFLOPS: list[tuple[str, float, float]] = [
    ("A100", 312.0, 19.5),
    ("H100 PCIe", 756.0, 51.0),  # H100 PCIe datasheet
    ("H100 NVL", 835.0, 60.0),  # H100 NVL datasheet
    ("H100", 989.0, 67.0),
    ("H200", 989.0, 67.0),
    ("L4", 121.0, 30.3),
    ("RTX 4090", 165.0, 82.6),
]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def peak_for_name(name: str, low_precision: bool) -> float | None:
    """The dense peak in TFLOP/s of the device called ``name`` for bf16 (``low_precision``)
    or fp32 work, or None when it is not in the table."""
    for key, bf16, fp32 in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return bf16 if low_precision else fp32
    return None


def peak_tflops(device: torch.device, low_precision: bool) -> float | None:
    """The peak of ``device`` (None for the CPU or a GPU not in the table)."""
    return None if device.type != "cuda" else peak_for_name(device_name(device), low_precision)
