"""What every image data set shares: scaling, held-out split, limit, flips, pipeline.

Loaders decode their files into arrays [N, C, H, W] of raw pixel values and call
``ImageDataset.bundle``; the parameters below then apply the same way to every format.
Scaling follows the usual convention (torchvision's ``Normalize``, EDM's dataset code):
pixels are first mapped to u in [0, 1] by the white value, then x = (u - mean) / std per
channel. mean = std = 0.5, the default, gives x = 2u - 1 in [-1, 1] (Ho et al. 2020 §4;
EDM ``/127.5 - 1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from difftk.data.dataset import DataBundle, Dataset
from difftk.data.items import ArrayItems, Items, PixelScaling
from difftk.data.split import heldout_split
from difftk.errors import DataError


@dataclass
class Decoded:
    """Raw pixels as a loader read them: images [N, C, H, W] (an array, or ``Items`` that
    decode on reading), labels [N] or None."""

    images: np.ndarray | Items
    labels: np.ndarray | None
    source: str  # file or directory, for messages

    def __post_init__(self):
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"{self.source}: holds {len(self.labels)} labels for "
                            f"{len(self.images)} images")

    @property
    def items(self) -> Items:
        if isinstance(self.images, Items):
            return self.images
        if self.images.ndim != 4 or 0 in self.images.shape:
            raise DataError(f"{self.source}: holds an array of shape {self.images.shape}, "
                            f"not images [N, C, H, W]")
        return ArrayItems(self.images, self.source)


@dataclass
class RawImages:
    """What an image data set decoded: its splits before scaling, split and limit."""

    train: Decoded
    test: Decoded | None = None
    white: float = 255.0
    num_classes: int | None = None
    class_names: list[str] | None = None


class ImageDataset(Dataset):
    """Base of image data sets: scaling, split, flips and pipeline parameters.

    A subclass decodes its files in ``decode`` (arrays in memory, or ``Items`` that read
    lazily); ``load`` applies the parameters below the same way to every format, and keeps a
    set that lives on disk there unless it is small (``pipeline``, ``memory_limit``)."""

    mean: list[float] = Field([0.5], min_length=1, description=(
        "per-channel mean subtracted from pixels in [0, 1] (one value, or one per channel); "
        "with std 0.5 this gives [-1, 1]"))
    std: list[float] = Field([0.5], min_length=1, description=(
        "per-channel std the centred pixels are divided by (one value, or one per channel)"))
    hflip: bool = Field(False, description="flip a random half of each batch left-right (seeded)")
    heldout: int | None = Field(None, ge=1, description=(
        "images held out from the training files; default: the data set's own test split "
        "when it has one, else a tenth of the images"))
    split_seed: int = Field(0, description="seed of the train / held-out permutation")
    limit: int | None = Field(None, ge=1, description="use only this many training images")
    pipeline: Literal["auto", "memory", "loader"] = Field("auto", description=(
        "memory: the whole set decoded into one tensor, batches by index; loader: items read "
        "from storage by DataLoader workers, only the batch's (pinned memory on a GPU); "
        "auto: memory when it fits (under memory_limit for a set on disk)"))
    workers: int = Field(2, ge=0, description="DataLoader worker processes (loader pipeline)")
    stats_items: int | None = Field(200_000, ge=100, description=(
        "a set read lazily without stored statistics (image files, a Hugging Face set) "
        "measures sigma_data over a seeded random subset of this many items, with its "
        "standard error; none: every item (a pack stores exact ones)"))
    memory_limit: float = Field(2.0, ge=0, description=(
        "auto: a set read from disk (packed shards, image files) is decoded into memory when "
        "its float32 copy takes at most this many GiB; larger sets are read lazily"))

    def decode(self) -> RawImages:
        raise NotImplementedError

    def load(self) -> DataBundle:
        return self.bundle(self.decode())

    def scaling(self, white: float, channels: int, source: str) -> PixelScaling:
        if any(s <= 0 for s in self.std):
            raise DataError(f"{source}: data.std must be positive (got {self.std})")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise DataError(f"{source}: data.{name} has {len(values)} values but the images "
                                f"have {channels} channel{'s' * (channels > 1)}")
        return PixelScaling(float(white), tuple(self.mean), tuple(self.std))

    def keep_lazy(self, items: Items) -> bool:
        """Whether the training split stays on storage (else it is decoded into memory)."""
        if isinstance(items, ArrayItems) or self.pipeline == "memory":
            return False  # already in memory: today's float tensor
        if self.pipeline == "loader":
            return True
        return len(items) * int(np.prod(items.item_shape)) * 4 > self.memory_limit * 2**30

    def bundle(self, raw: RawImages) -> DataBundle:
        """Split, limit and scale decoded pixels into a DataBundle."""
        train, test = raw.train, raw.test
        items, labels = train.items, train.labels
        source = train.source
        if self.heldout is None and test is not None:
            held_items, held_labels = test.items, test.labels
            if held_items.item_shape != items.item_shape:
                raise DataError(f"{test.source}: images of shape {held_items.item_shape} do "
                                f"not match the training images {items.item_shape}")
        else:
            keep, out = heldout_split(len(items), self.heldout, self.split_seed, source)
            held_items = items.subset(out)
            held_labels = labels[out] if labels is not None else None
            items = items.subset(keep)
            labels = labels[keep] if labels is not None else None
        if self.limit is not None and self.limit < len(items):
            items = items.subset(np.arange(self.limit))
            labels = labels[: self.limit] if labels is not None else None
        scaling = self.scaling(raw.white, items.item_shape[0], source)
        lazy = self.keep_lazy(raw.train.items)
        x_train = scaled(items, scaling, lazy)
        x_held = scaled(held_items, scaling, lazy)
        y = torch.from_numpy(labels.astype(np.int64)) if labels is not None else None
        y_held = torch.from_numpy(held_labels.astype(np.int64)) if held_labels is not None \
            else None
        num_classes = raw.num_classes
        if num_classes is None:
            num_classes = 1 + max(int(t.max()) for t in (y, y_held) if t is not None and len(t)) \
                if y is not None else 0
        return DataBundle(
            source=source, train=x_train, heldout=x_held,
            train_labels=y, heldout_labels=y_held if y is not None else None,
            num_classes=num_classes if y is not None else 0, kind="image",
            class_names=list(raw.class_names or []), hflip=self.hflip,
            pipeline=self.pipeline, workers=self.workers, stats_items=self.stats_items)


def scaled(items: Items, scaling, lazy: bool):
    """The split as training values: ``items`` with ``scaling`` attached (read per batch), or
    one float tensor decoded and scaled now (None: the stored values are training values)."""
    view = items.subset(np.arange(len(items)))
    view.scaling = scaling
    return view if lazy else view[:]


def channels_first(array: np.ndarray, channels: Literal["auto", "first", "last"],
                   source: str) -> np.ndarray:
    """[N, H, W] -> [N, 1, H, W]; [N, H, W, C] or [N, C, H, W] -> [N, C, H, W].

    "auto" reads a small axis (1, 3 or 4) as the channel axis and refuses to guess when
    both ends could be channels.
    """
    if array.ndim == 3:
        return array[:, None]
    if array.ndim != 4:
        raise DataError(f"{source}: holds an array of shape {array.shape}, not images "
                        f"[N, H, W], [N, C, H, W] or [N, H, W, C]")
    if channels == "auto":
        first, last = array.shape[1] in (1, 3, 4), array.shape[3] in (1, 3, 4)
        if first == last:
            raise DataError(f"{source}: cannot tell the channel axis of shape {array.shape}; "
                            f'set data.channels to "first" or "last"')
        channels = "first" if first else "last"
    return array if channels == "first" else array.transpose(0, 3, 1, 2)
