"""Built-in precision policies (seed 001 §12)."""

from __future__ import annotations

import importlib.util

import torch
from pydantic import Field

from difftk.errors import DifftkError
from difftk.hookspecs import hookimpl
from difftk.nn.rounded_matmuls import RoundedMatmuls
from difftk.optim.precision import Precision


def bf16_is_native(device: torch.device) -> bool:
    """True where bf16 matmuls run at speed: CUDA devices that support bf16."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def cuda_capability(device: torch.device) -> tuple[int, int] | None:
    """The compute capability of a CUDA device; None for other devices."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(device)


class FP32(Precision):
    """Everything in fp32."""

    name = "fp32"

    def autocast_dtype(self, device):
        return None


EMULATE_HELP = ("emulate the dtype in fp32: round every matmul's and convolution's operands, "
                 "result and gradients to it, as tensor cores do, at fp32 speed (for CPUs, where "
                 "bf16 and fp16 run ~100x slower; numerics of nn/rounded_matmuls.py)")


class _Emulable(Precision):
    emulate: bool = Field(False, description=EMULATE_HELP)

    def emulated(self, device) -> bool:
        """Whether the low dtype is emulated in fp32 rather than run."""
        return self.emulate

    def autocast(self, device):
        if self.emulate:
            return RoundedMatmuls(self.autocast_dtype(device))
        return super().autocast(device)


class BF16(_Emulable):
    """bf16 autocast, no loss scaling; fp32 master weights (seed 001 §12.1, §12.3).
    ``emulate = true`` rounds to bf16 in fp32 instead (nn/rounded_matmuls.py)."""

    name = "bf16"

    def autocast_dtype(self, device):
        return torch.bfloat16


class FP16(_Emulable):
    """fp16 autocast with dynamic loss scaling (seed 001 §12.3): overflowing steps are skipped.

    The loss is multiplied by S before backward so small gradients stay above fp16's
    6.1e-5 normal range; gradients are divided by S before clipping and the optimizer
    step. A step whose unscaled gradients hold Inf/NaN is skipped and S is multiplied
    by ``backoff_factor``; after ``growth_interval`` good steps in a row S grows by
    ``growth_factor`` (Micikevicius et al. 2018; torch.amp.GradScaler). ``emulate = true``
    rounds to fp16 in fp32 (nn/rounded_matmuls.py): gradients underflow and overflow at the
    rounded ops as on a GPU, so the scaler's work is real.
    """

    name = "fp16"
    init_scale: float = Field(2.0**16, gt=0, description="initial loss scale S")
    growth_factor: float = Field(2.0, gt=1, description="S grows by this after growth_interval good steps")
    backoff_factor: float = Field(0.5, gt=0, lt=1, description="S is multiplied by this on an overflow")
    growth_interval: int = Field(2000, ge=1, description="good steps in a row before S grows")

    def autocast_dtype(self, device):
        return torch.float16

    def make_scaler(self, device):
        return torch.amp.GradScaler(device.type, init_scale=self.init_scale,
                                    growth_factor=self.growth_factor,
                                    backoff_factor=self.backoff_factor,
                                    growth_interval=self.growth_interval)


class TF32(Precision):
    """fp32 storage with TF32 tensor-core matmuls and convolutions where the device has them.

    TF32 keeps fp32's 8-bit exponent and rounds the mantissa to 10 bits inside matmuls
    (NVIDIA Ampere and later, compute capability >= 8.0). Elsewhere (CPUs, older GPUs)
    the run is plain fp32.
    """

    name = "tf32"

    def autocast_dtype(self, device):
        return None

    def prepare(self, device, model):
        capability = cuda_capability(device)
        enabled = capability is not None and capability >= (8, 0)
        # Process-wide switches: a run owns its process, so setting them once is enough.
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


class FP8(Precision):
    """fp8 (E4M3 forward, E5M2 gradients) linear layers via torchao, bf16 elsewhere.

    Runs only on CUDA devices with fp8 tensor cores (compute capability >= 8.9: Ada,
    Hopper) and with the ``torchao`` package installed; anywhere else it refuses with
    one sentence. torchao's dynamic per-tensor scaling replaces the layers' matmuls; the
    remaining ops run under bf16 autocast; master weights stay fp32 (seed 001 §12.1).
    """

    name = "fp8"

    def autocast_dtype(self, device):
        return torch.bfloat16

    def prepare(self, device, model):
        capability = cuda_capability(device)
        if capability is None or capability < (8, 9):
            where = f"a {device.type} device" if capability is None else \
                f"a CUDA device of compute capability {capability[0]}.{capability[1]}"
            raise DifftkError(f"precision fp8 needs a CUDA device with fp8 tensor cores (compute "
                              f"capability 8.9 or newer), but this run is on {where}; use bf16 "
                              f"or fp16")
        if importlib.util.find_spec("torchao") is None:
            raise DifftkError("precision fp8 needs the torchao package (pip install torchao); "
                              "use bf16 or fp16 without it")
        from torchao.float8 import convert_to_float8_training

        # fp8 matmuls need both dimensions divisible by 16; smaller layers stay in bf16.
        convert_to_float8_training(model, module_filter_fn=lambda mod, _name: isinstance(
            mod, torch.nn.Linear) and mod.in_features % 16 == 0 and mod.out_features % 16 == 0)


class Auto(Precision):
    """bf16 where the hardware has it, else fp32 (CPUs without native bf16 run it ~100x slower)."""

    name = "auto"

    def autocast_dtype(self, device):
        return torch.bfloat16 if bf16_is_native(device) else None


@hookimpl
def register_precision(register):
    for cls in (FP32, BF16, FP16, TF32, FP8, Auto):
        register(cls)
