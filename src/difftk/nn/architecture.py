"""Architectures: a params model whose ``build`` returns the network f_theta.

The network is called as ``net(x, time, labels)``: x of the data's shape, time the
[B] noise conditioning the target provides, labels optional class indices (None, or the
null index ``num_classes``, for unconditional calls). A network built with
``spec.augment_dim > 0`` also takes ``augment_labels=`` [B, augment_dim], the augmentation
parameters of its training images (EDM's augmentation labels; None, as at sampling, means
zeros).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import model_validator
from torch import nn

from difftk.component import Component
from difftk.errors import DifftkError


@dataclass(frozen=True)
class DataSpec:
    """What the network must accept and emit."""

    shape: tuple[int, ...]  # one sample: (C, H, W) for images, (D,) for vectors
    out_channels: int  # C, or 2C when the variance is learned
    num_classes: int = 0  # 0: unconditional
    augment_dim: int = 0  # length of the augmentation labels it takes (0: none; data/augment.py)


class ArchitectureError(DifftkError):
    """A network that cannot be built for the data it is given (shape, widths, heads)."""


class Architecture(Component):
    """A network family with its hyper-parameters.

    A subclass may offer named presets (``PRESETS``: name -> field values) selected by a
    ``preset`` field; fields set explicitly beside ``preset`` override the preset's values.
    """

    family: ClassVar[str] = "architectures"
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    # Whether build() honours spec.augment_dim (an [augment] pipeline needs it to).
    takes_augment_labels: ClassVar[bool] = False

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in cls.PRESETS:
            return {**cls.PRESETS[data["preset"]], **data}
        return data  # an unknown preset is reported by the field's own validation

    def build(self, spec: DataSpec) -> nn.Module:
        raise NotImplementedError
