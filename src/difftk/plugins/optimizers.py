"""Built-in optimizers."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field

from difftk.hookspecs import hookimpl
from difftk.optim.optimizer import Optimizer

# A moment decay rate: torch refuses values outside [0, 1) only once training starts.
Beta = Annotated[float, Field(ge=0, lt=1)]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), EDM's optimizer: lr 1e-3 tuned there for sum reduction."""

    name = "adam"
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="moment decay rates, each in [0, 1)")
    eps: float = Field(1e-8, gt=0, description="denominator epsilon")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient")

    def build(self, params):
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                weight_decay=self.weight_decay)


class AdamW(Optimizer):
    """AdamW with decoupled weight decay (Loshchilov & Hutter 2019)."""

    name = "adamw"
    lr: float = Field(1e-4, gt=0, description="peak learning rate")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="moment decay rates, each in [0, 1)")
    eps: float = Field(1e-8, gt=0, description="denominator epsilon")
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay")

    def build(self, params):
        return torch.optim.AdamW(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                 weight_decay=self.weight_decay)


@hookimpl
def register_optimizers(register):
    register(Adam)
    register(AdamW)
