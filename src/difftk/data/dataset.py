"""Data sets: a params model whose ``load`` returns tensors in memory.

Images are [N, C, H, W], by default scaled to [-1, 1]; vectors are [N, D]. A data set
always provides a held-out split for validation loss and sample metrics. The bundle
also says how batches are to be drawn (horizontal flips, which input pipeline).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from torch import Tensor

from difftk.component import Component
from difftk.data.stats import DataStats, data_statistics


@dataclass
class DataBundle:
    train: Tensor
    heldout: Tensor
    train_labels: Tensor | None = None
    heldout_labels: Tensor | None = None
    num_classes: int = 0
    kind: Literal["image", "vector"] = "image"
    class_names: list[str] = field(default_factory=list)
    hflip: bool = False  # flip half of each batch left-right (seeded, see data/batches.py)
    pipeline: Literal["auto", "memory", "loader"] = "auto"
    workers: int = 2  # DataLoader workers when the loader pipeline is used

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @functools.cached_property
    def stats(self) -> DataStats:
        """Statistics of the training split (float64, chunked)."""
        return data_statistics(self.train)

    @property
    def sigma_data(self) -> float:
        """The training set's standard deviation over all values, which EDM preconditioning
        needs (Karras et al. 2022, seed 001 §8.1: sigma_data = std of the data)."""
        return self.stats.std


class Dataset(Component):
    """A source of training data."""

    family: ClassVar[str] = "datasets"

    def load(self) -> DataBundle:
        raise NotImplementedError
