"""Gradient (activation) checkpointing: recompute a block's activations in the backward pass.

Trades about one extra forward per block for not storing its activations; only active
while training with gradients enabled. The non-reentrant form replays the RNG state, so
dropout draws the same mask in the recomputation.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def run_block(block: nn.Module, *args, enabled: bool):
    """``block(*args)``, checkpointed when ``enabled`` and a gradient will be taken."""
    if enabled and block.training and torch.is_grad_enabled():
        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)
