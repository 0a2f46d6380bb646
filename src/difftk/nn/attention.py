"""Scaled dot-product attention with its scores and softmax in fp32 (seed 001 §12.4).

softmax(q k^T / sqrt(d)) v through torch's scaled_dot_product_attention. With
``fp32=True`` q, k, v are cast to fp32 and autocast is switched off for the call, so
large logits cannot overflow in a low-precision dtype; the result is cast back.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from difftk.nn.fp32 import fp32_region


def attention(q: Tensor, k: Tensor, v: Tensor, fp32: bool = True) -> Tensor:
    """Attention over the token axis of [B, heads, N, head_dim] tensors."""
    if not fp32:
        return F.scaled_dot_product_attention(q, k, v)
    dtype = v.dtype
    with fp32_region(q):
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    return out.to(dtype)
