"""Low-precision autocast emulated in fp32: the numerics of bf16 or fp16 on a CPU that lacks them.

On GPUs, autocast runs matmuls and convolutions on tensor cores: operands rounded to bf16 or
fp16, products accumulated in fp32, the result rounded to the low dtype (NVIDIA's mixed-
precision training guide; Micikevicius et al. 2018 §3). CPUs without native bf16 run the same
ops ~100x slower than fp32. ``RoundedMatmuls`` reproduces those roundings at fp32 speed: every
matmul-like op's floating inputs and outputs are rounded to the dtype (x.to(dtype).float())
and the op runs in fp32. Because the rounding is a cast, autograd rounds the gradients that
flow back through it as well, so fp16's underflow of small gradients (what loss scaling
exists for, seed 001 §12.3) and overflow above 65,504 happen as on a GPU.

What differs from real autocast: elementwise ops between matmuls (activations, residual
adds) run in fp32 on the rounded values, where autocast would run them in the low dtype, so
emulation is slightly more precise than the real thing. The fp32 islands (nn/fp32.py) pause
the rounding as they switch autocast off.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

# The ops autocast runs in the low dtype (torch's CUDA autocast "lower_precision_fp" list).
LOW_PRECISION_OPS = frozenset({
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    F.linear, F.scaled_dot_product_attention, torch.matmul, torch.mm, torch.bmm, torch.addmm,
    torch.baddbmm, torch.addbmm, torch.einsum, Tensor.matmul, Tensor.__matmul__, Tensor.mm,
    Tensor.bmm,
})

_ACTIVE: list[RoundedMatmuls] = []


class RoundedMatmuls(TorchFunctionMode):
    """A function mode that rounds matmul-like ops' fp32 inputs and outputs to ``dtype``."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype
        self.paused = 0

    def _round(self, x):
        if isinstance(x, Tensor) and x.dtype == torch.float32:
            return x.to(self.dtype).to(torch.float32)
        return x

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.paused or func not in LOW_PRECISION_OPS:
            return func(*args, **kwargs)
        out = func(*tree_map(self._round, args), **tree_map(self._round, kwargs))
        return tree_map(self._round, out)

    def __enter__(self):
        _ACTIVE.append(self)
        return super().__enter__()

    def __exit__(self, *exc):
        _ACTIVE.remove(self)
        return super().__exit__(*exc)


def rounding_active() -> bool:
    """Whether an emulated low-precision region is open and not paused."""
    return bool(_ACTIVE) and not _ACTIVE[-1].paused


@contextlib.contextmanager
def paused_rounding():
    """Run the enclosed code in plain fp32 (an fp32 island inside an emulated region)."""
    mode = _ACTIVE[-1]
    mode.paused += 1
    try:
        yield
    finally:
        mode.paused -= 1
