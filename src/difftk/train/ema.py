"""Exponential moving averages of the weights (seed 001 §11).

The EMA is a shadow copy, never used in the training forward pass; it is saved with
every checkpoint and samples are drawn from it by default.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import torch
from torch import nn

from difftk.component import Component


class Ema(Component):
    """A schedule for the averaging decay beta(step)."""

    family: ClassVar[str] = "ema"
    enabled: ClassVar[bool] = True

    def decay(self, step: int, batch_size: int) -> float:
        """beta after optimizer step ``step`` (1-based): ema <- beta ema + (1 - beta) weights."""
        raise NotImplementedError


class EmaModel:
    """The shadow copy of a module and its update."""

    def __init__(self, model: nn.Module, rule: Ema):
        self.rule = rule
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, batch_size: int) -> None:
        if not self.rule.enabled:
            return
        beta = self.rule.decay(step, batch_size)
        ema = list(self.module.parameters())
        cur = list(model.parameters())
        torch._foreach_lerp_(ema, cur, 1.0 - beta)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state):
        self.module.load_state_dict(state)
