"""Data sets: a params model whose ``load`` returns tensors in memory.

Images are [N, C, H, W] scaled to [-1, 1]; vectors are [N, D]. A data set always
provides a held-out split for validation loss and sample metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor

from difftk.component import Component


@dataclass
class DataBundle:
    train: Tensor
    heldout: Tensor
    train_labels: Tensor | None = None
    heldout_labels: Tensor | None = None
    num_classes: int = 0
    kind: Literal["image", "vector"] = "image"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @property
    def sigma_data(self) -> float:
        """The training set's standard deviation, which EDM preconditioning needs."""
        return float(self.train.double().std())


class Dataset(Component):
    """A source of training data."""

    family: ClassVar[str] = "datasets"

    def load(self) -> DataBundle:
        raise NotImplementedError
