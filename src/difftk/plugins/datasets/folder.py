"""A folder of PNG / JPEG images (one sub-folder per class, or EDM's dataset.json labels) or
an EDM / EDM2 ``dataset_tool.py`` zip: read lazily, or decoded once and cached when small.

A set whose float32 copy fits ``memory_limit`` (and ``pipeline = "memory"``) is decoded once
into memory, and the uint8 array is cached as an .npz keyed by every file's path, size and
modification time and by the decoding parameters, so a second run does not decode again.
A larger set (or ``pipeline = "loader"``) stays on disk: DataLoader workers decode just
the images of each batch (data/image_files.py has the decoding rules). For large sets,
``difftk data pack`` once and train on the shards: decoding is then done.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from difftk.data.image_files import ImageFileItems, list_images
from difftk.data.images import Decoded, ImageDataset, RawImages
from difftk.hookspecs import hookimpl

CACHE_VERSION = 2


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "difftk" / "folder"


class Folder(ImageDataset):
    """A folder of PNG/JPEG images (sub-folders as classes) or an EDM dataset zip."""

    name = "folder"
    path: str = Field(description="directory of images (or of one sub-folder per class), or an "
                      "EDM / EDM2 dataset_tool.py .zip")
    resolution: int | None = Field(None, ge=4, description=(
        "side of the square images, in pixels; default: the images' own size (they must all "
        "share it)"))
    center_crop: bool = Field(True, description=(
        "scale the shorter side to the resolution and crop the centre; false: stretch"))
    channels: Literal[1, 3] = Field(3, description="3: RGB, 1: greyscale")
    cache: bool = Field(True, description="keep the decoded array in cache_dir for later runs "
                        "(sets decoded into memory)")
    cache_dir: str | None = Field(None, description=(
        "where decoded arrays are cached; default $XDG_CACHE_HOME/difftk/folder"))

    def items(self) -> tuple[ImageFileItems, np.ndarray | None, list[str]]:
        """(the images as lazily decoded items, labels or None, class names)."""
        root = Path(self.path).expanduser()
        listing = list_images(root)
        items = ImageFileItems(root, listing.names, self.resolution, self.center_crop,
                               self.channels)
        labels = np.asarray(listing.labels, dtype=np.int64) if listing.labelled else None
        return items, labels, listing.classes

    def _cache_file(self, items: ImageFileItems) -> Path:
        key = {"version": CACHE_VERSION, "root": str(items.root.resolve()),
               "digest": items.digest()}
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
        base = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
        return base / f"{items.root.name or 'images'}-{digest}.npz"

    def decoded(self, listed=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(uint8 images [N, C, R, R], labels [N] (-1: none), class names) decoded whole, from
        the cache when the files and parameters are unchanged (``listed``: ``items()``)."""
        items, labels, classes = listed or self.items()
        label_array = labels if labels is not None else np.full(len(items), -1, np.int64)
        cache = self._cache_file(items) if self.cache else None
        if cache is not None and cache.is_file():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    return z["images"], z["labels"], [str(c) for c in z["classes"]]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is rebuilt below
        images = items.read(np.arange(len(items))).numpy()
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
                np.savez(tmp, images=images, labels=label_array,
                         classes=np.asarray(classes, dtype=str))
                os.replace(tmp, cache)
            except OSError:
                pass  # an unwritable cache only costs decoding again next time
        return images, label_array, classes

    def decode(self) -> RawImages:
        listed = self.items()
        items, labels, classes = listed
        if self.keep_lazy(items):
            decoded = Decoded(items, labels, self.path)
        else:
            images, all_labels, classes = self.decoded(listed)
            decoded = Decoded(images, all_labels if classes else None, self.path)
        return RawImages(decoded, None, white=255.0,
                         num_classes=len(classes) if classes else None, class_names=classes)


@hookimpl
def register_datasets(register):
    register(Folder)
