"""Arrays from .npy / .npz files: images (or vectors) under a key, labels optional.

Seed 004 loads MNIST this way (``MNIST_data.npy`` and ``MNIST_labels.npy``, reshaped to
[N, 1, 28, 28]); Keras's ``mnist.npz`` holds x_train, y_train, x_test, y_test. Files are
read with ``allow_pickle=False``: loading data cannot run code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from difftk.data.dataset import DataBundle
from difftk.data.images import Decoded, ImageDataset, RawImages, channels_first
from difftk.data.split import heldout_split
from difftk.errors import DataError
from difftk.hookspecs import hookimpl

# Keys tried, in order, when a .npz holds several arrays and no images key is given.
IMAGE_KEYS = ("images", "x_train", "x", "data", "arr_0")


def _open(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return {k: loaded[k] for k in loaded.files}
        return loaded
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        if "pickle" in str(exc):
            # numpy's own advice here is to enable allow_pickle, which would let a data file
            # run code: never pass it on.
            raise DataError(f"{path}: is not a .npy or .npz file of plain arrays (numpy "
                            "reads it as pickled Python objects, which difftk never "
                            "loads)") from None
        raise DataError(f"{path}: is not a readable .npy or .npz file of plain arrays "
                        f"({exc})") from None


def _array(path: Path, key: str | None, role: str) -> tuple[np.ndarray, str]:
    """The array named ``key`` in the .npz at ``path`` (or the .npy itself)."""
    content = _open(path)
    if isinstance(content, np.ndarray):
        return _nonempty(content, str(path), role)
    if not content:
        raise DataError(f"{path}: holds no arrays")
    if key is None:
        if len(content) == 1:
            key = next(iter(content))
        else:
            key = next((k for k in IMAGE_KEYS if k in content), None)
            if key is None:
                raise DataError(f"{path}: holds several arrays ({', '.join(content)}); set "
                                f"data.{role} to one of them")
    if key not in content:
        raise DataError(f"{path}: has no array \"{key}\" (it holds {', '.join(content)})")
    return _nonempty(content[key], f"{path}[{key}]", role)


def _nonempty(array: np.ndarray, source: str, role: str) -> tuple[np.ndarray, str]:
    if array.size == 0:
        raise DataError(f"{source}: holds an array of shape {tuple(array.shape)}, with no values")
    if array.ndim < 2 and role != "labels" and not role.endswith("_labels"):
        raise DataError(f"{source}: holds a 1-D array of {array.shape[0]} values; items need "
                        "a shape of their own (save it as [N, 1] for 1-D points, or set "
                        "data.shape)")
    return array, source


class Npz(ImageDataset):
    """Images or vectors from a .npy / .npz file, with optional labels and held-out arrays.

    Arrays [N, H, W], [N, C, H, W] or [N, H, W, C] are images; [N, D] without ``shape``
    are vectors, used as they are (no scaling, no flips).
    """

    name = "npz"
    path: str = Field(description="the .npz or .npy file of training images")
    images_key: str | None = Field(None, description=(
        "array of images in the .npz; default: its only array, or the first of "
        + ", ".join(IMAGE_KEYS)))
    labels: str | None = Field(None, description=(
        "labels: a key of the .npz, or the path of a .npy file (as seed 004's MNIST_labels.npy)"))
    heldout_images: str | None = Field(None, description=(
        "held-out images: a key of the .npz (e.g. x_test) or a .npy path; default: hold out "
        "images from the training array"))
    heldout_labels: str | None = Field(None, description="labels of the held-out images, likewise")
    channels: Literal["auto", "first", "last"] = Field(
        "auto", description="where the channel axis of 4-D arrays is")
    shape: list[int] | None = Field(None, min_length=2, max_length=3, description=(
        "reshape each item to [C, H, W] or [H, W] (e.g. [1, 28, 28] for flat MNIST rows)"))
    white: float | None = Field(None, gt=0, description=(
        "value of a white pixel; default 255 for integer arrays, 1 for floats in [0, 1], else 255"))

    def _resolve(self, ref: str | None, role: str) -> tuple[np.ndarray, str] | None:
        """A reference to an array: a key of the main .npz, or another file's path."""
        if ref is None:
            return None
        main = Path(self.path).expanduser()
        if main.suffix == ".npz":
            content = _open(main)
            if isinstance(content, dict) and ref in content:
                return content[ref], f"{main}[{ref}]"
        if ref.endswith((".npy", ".npz")):
            other = Path(ref).expanduser()
            if not other.is_absolute() and not other.exists():
                other = main.parent / other  # relative to the images file
            return _array(other, None, role)
        raise DataError(f"{main}: has no array \"{ref}\" and data.{role} is not a .npy or "
                        f".npz path")

    def _items(self, array: np.ndarray, source: str) -> np.ndarray:
        if array.dtype.kind not in "uifb":
            raise DataError(f"{source}: holds {array.dtype} values, not numbers")
        if self.shape is not None:
            per_item = int(np.prod(self.shape))
            if array.size % per_item or array.shape[0] * per_item != array.size:
                raise DataError(f"{source}: items of shape {list(array.shape[1:])} cannot be "
                                f"reshaped to {self.shape}")
            array = array.reshape(array.shape[0], *self.shape)
            return array[:, None] if array.ndim == 3 else array
        return channels_first(array, self.channels, source)

    def load(self) -> DataBundle:
        images, source = _array(Path(self.path).expanduser(), self.images_key, "images_key")
        if images.ndim == 2 and self.shape is None:
            return self._vectors(images, source, self._resolve(self.labels, "labels"))
        return self.bundle(self.decode())

    def decode(self) -> RawImages:
        images, source = _array(Path(self.path).expanduser(), self.images_key, "images_key")
        labels = self._resolve(self.labels, "labels")
        if images.ndim == 2 and self.shape is None:
            raise DataError(f"{source}: holds vectors [N, D], not images; set data.shape to "
                            "read them as images")
        train = Decoded(self._items(images, source), _flat_labels(labels), source)
        test = None
        held = self._resolve(self.heldout_images, "heldout_images")
        if held is not None:
            test = Decoded(self._items(*held), _flat_labels(
                self._resolve(self.heldout_labels, "heldout_labels")), held[1])
        white = self.white
        if white is None:
            floats = images.dtype.kind == "f"
            white = 1.0 if floats and float(images.min()) >= 0 and float(images.max()) <= 1 \
                else 255.0
        return RawImages(train, test, white=white)

    def _vectors(self, x: np.ndarray, source: str, labels) -> DataBundle:
        """[N, D] arrays: points, not pixels, so no scaling and no flips."""
        n = x.shape[0]
        if 0 in x.shape:
            raise DataError(f"{source}: holds an array of shape {x.shape}, with no values")
        keep, out = heldout_split(n, self.heldout, self.split_seed, source, "rows")
        keep = keep[: self.limit]
        data = torch.from_numpy(x.astype(np.float32))
        y = _flat_labels(labels)
        if y is not None and len(y) != n:
            raise DataError(f"{labels[1]}: holds {len(y)} labels for the {n} rows of {source}")
        y = torch.from_numpy(y.astype(np.int64)) if y is not None else None
        return DataBundle(source=source, train=data[keep], heldout=data[out],
                          train_labels=y[keep] if y is not None else None,
                          heldout_labels=y[out] if y is not None else None,
                          num_classes=int(y.max()) + 1 if y is not None else 0, kind="vector",
                          pipeline=self.pipeline, workers=self.workers)


def _flat_labels(labels: tuple[np.ndarray, str] | None) -> np.ndarray | None:
    if labels is None:
        return None
    array, source = labels
    if array.ndim != 1 or array.dtype.kind not in "ui":
        raise DataError(f"{source}: holds {array.dtype} of shape {list(array.shape)}, not "
                        f"integer labels [N]")
    if len(array) and (int(array.min()) < 0 or int(array.max()) >= MAX_CLASSES):
        raise DataError(f"{source}: labels must lie in 0..{MAX_CLASSES - 1} (classes are "
                        f"numbered from 0), and these run from {int(array.min())} to "
                        f"{int(array.max())}; number the classes 0..K-1")
    return array


# The number of classes is 1 + the largest label; a label of 10^11 must not ask for an
# embedding table of 10^11 rows. ImageNet-21k has 21,841 classes.
MAX_CLASSES = 1 << 20


@hookimpl
def register_datasets(register):
    register(Npz)
