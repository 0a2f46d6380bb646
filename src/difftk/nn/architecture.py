"""Architectures: a params model whose ``build`` returns the network f_theta.

The network is called as ``net(x, time, labels)``: x of the data's shape, time the
[B] noise conditioning the target provides, labels optional class indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from difftk.component import Component


@dataclass(frozen=True)
class DataSpec:
    """What the network must accept and emit."""

    shape: tuple[int, ...]  # one sample: (C, H, W) for images, (D,) for vectors
    out_channels: int  # C, or 2C when the variance is learned
    num_classes: int = 0  # 0: unconditional


class Architecture(Component):
    """A network family with its hyper-parameters."""

    family: ClassVar[str] = "architectures"

    def build(self, spec: DataSpec) -> nn.Module:
        raise NotImplementedError
