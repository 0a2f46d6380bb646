"""Data sets: a params model whose ``load`` returns a bundle of two random-access splits.

Each split is a float tensor in memory (the fast path for sets that fit) or ``Items`` read
from storage by index (data/items.py: packed shards, image files, a Hugging Face set).
Images are [N, C, H, W], by default scaled to [-1, 1]; vectors are [N, D]. A data set
always provides a held-out split for validation loss and sample metrics. The bundle
also says how batches are to be drawn (horizontal flips, which input pipeline).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor

from difftk.component import Component
from difftk.data.items import Items, is_lazy
from difftk.data.stats import DataStats, data_statistics, subset_statistics
from difftk.errors import DataError


@dataclass
class DataBundle:
    train: Tensor | Items  # [N, ...]: a tensor in memory, or items read by index
    heldout: Tensor | Items
    train_labels: Tensor | None = None
    heldout_labels: Tensor | None = None
    num_classes: int = 0
    kind: Literal["image", "vector"] = "image"
    class_names: list[str] = field(default_factory=list)
    hflip: bool = False  # flip half of each batch left-right (seeded, see data/batches.py)
    pipeline: Literal["auto", "memory", "loader"] = "auto"
    workers: int = 2  # DataLoader workers when the loader pipeline is used
    source: str = ""  # the file or folder the data came from, for messages
    known_stats: DataStats | None = None  # the training split's, when stored beside the set
    encoded_with: dict | None = None  # a latent set's codec record (difftk data encode)
    stats_items: int | None = None  # a lazy set's statistics over at most this many items

    def __post_init__(self):
        # Every data set, a plugin's too, is checked here: an empty split or a NaN would
        # otherwise surface far away (a shape error in the network, a NaN-guard stop).
        for split, x in (("training", self.train), ("held-out", self.heldout)):
            refuse_unusable(x, f"{self.source or 'the data set'}: the {split} split")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])

    @functools.cached_property
    def stats(self) -> DataStats:
        """Statistics of the training split: as stored beside the set (a pack's manifest), or
        streamed over it in float64 chunks."""
        if self.known_stats is not None:
            return self.known_stats
        if self.stats_items is not None and is_lazy(self.train) and \
                len(self.train) > self.stats_items:
            return subset_statistics(self.train, self.stats_items)
        return data_statistics(self.train)

    @property
    def sigma_data(self) -> float:
        """The training set's standard deviation over all values, which EDM preconditioning
        needs (Karras et al. 2022, seed 001 §8.1: sigma_data = std of the data)."""
        return self.stats.std


def refuse_unusable(x, where: str, chunk: int = 4096) -> None:
    """A DataError unless x [N, ...] holds at least one item of at least one value, all finite
    (a set read from storage is checked for shape only: scanning it would read it whole)."""
    if x.dim() < 2 or 0 in x.shape:
        raise DataError(f"{where} has shape {list(x.shape)}: no values to train on")
    if not x.is_floating_point() or is_lazy(x):
        return
    nan = inf = items = 0
    for start in range(0, x.shape[0], chunk):  # chunks: no mask the size of the data set
        part = x[start:start + chunk]
        bad = ~torch.isfinite(part)
        if bool(bad.any()):
            nan += int(torch.isnan(part).sum())
            inf += int(torch.isinf(part).sum())
            items += int(bad.flatten(1).any(1).sum())
    if nan or inf:
        raise DataError(f"{where} holds {nan} NaN and {inf} infinite values (in {items} of "
                        f"{x.shape[0]} items); remove or replace them before training")


class Dataset(Component):
    """A source of training data."""

    family: ClassVar[str] = "datasets"

    def load(self) -> DataBundle:
        raise NotImplementedError
