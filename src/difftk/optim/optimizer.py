"""Optimizers: a params model whose ``build`` returns a torch optimizer."""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from difftk.component import Component


class Optimizer(Component):
    """An optimizer with its hyper-parameters; the learning rate warms up per [train]."""

    family: ClassVar[str] = "optimizers"

    lr: float = Field(1e-3, gt=0, description="peak learning rate")

    def build(self, params) -> torch.optim.Optimizer:
        raise NotImplementedError
