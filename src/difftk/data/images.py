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
from difftk.data.split import heldout_split
from difftk.errors import DataError


@dataclass
class Decoded:
    """Raw pixels as a loader read them: images [N, C, H, W], labels [N] or None."""

    images: np.ndarray
    labels: np.ndarray | None
    source: str  # file or directory, for messages

    def __post_init__(self):
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"{self.source}: holds {len(self.labels)} labels for "
                            f"{len(self.images)} images")


class ImageDataset(Dataset):
    """Base of image data sets: scaling, split, flips and pipeline parameters."""

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
        "memory: one tensor on the device, batches by index; loader: a DataLoader with "
        "workers and pinned memory; auto: memory when it fits"))
    workers: int = Field(2, ge=0, description="DataLoader worker processes (loader pipeline)")

    def _scale(self, images: np.ndarray, white: float, source: str) -> torch.Tensor:
        channels = images.shape[1]
        if any(s <= 0 for s in self.std):
            raise DataError(f"{source}: data.std must be positive (got {self.std})")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, channels):
                raise DataError(f"{source}: data.{name} has {len(values)} values but the images "
                                f"have {channels} channel{'s' * (channels > 1)}")
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        x = torch.from_numpy(np.ascontiguousarray(images)).float()
        return x.div_(white).sub_(mean).div_(std)

    def bundle(self, train: Decoded, test: Decoded | None = None, white: float = 255.0,
               num_classes: int | None = None, class_names: list[str] | None = None
               ) -> DataBundle:
        """Split, limit and scale decoded pixels into a DataBundle."""
        images, labels = train.images, train.labels
        if images.ndim != 4 or 0 in images.shape:
            raise DataError(f"{train.source}: holds an array of shape {images.shape}, "
                            f"not images [N, C, H, W]")
        if self.heldout is None and test is not None:
            held_images, held_labels = test.images, test.labels
            if held_images.shape[1:] != images.shape[1:]:
                raise DataError(f"{test.source}: images of shape {held_images.shape[1:]} do "
                                f"not match the training images {images.shape[1:]}")
        else:
            keep, out = heldout_split(images.shape[0], self.heldout, self.split_seed,
                                      train.source)
            held_images = images[out]
            held_labels = labels[out] if labels is not None else None
            images = images[keep]
            labels = labels[keep] if labels is not None else None
        if self.limit is not None:
            images = images[: self.limit]
            labels = labels[: self.limit] if labels is not None else None
        source = train.source
        y = torch.from_numpy(labels.astype(np.int64)) if labels is not None else None
        y_held = torch.from_numpy(held_labels.astype(np.int64)) if held_labels is not None \
            else None
        if num_classes is None:
            num_classes = 1 + max(int(t.max()) for t in (y, y_held) if t is not None) \
                if y is not None else 0
        return DataBundle(
            source=source, train=self._scale(images, white, source),
            heldout=self._scale(held_images, white, source),
            train_labels=y, heldout_labels=y_held if y is not None else None,
            num_classes=num_classes if y is not None else 0, kind="image",
            class_names=list(class_names or []), hflip=self.hflip,
            pipeline=self.pipeline, workers=self.workers)


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
