"""MNIST-format IDX files, gzipped or raw (MNIST, Fashion-MNIST, KMNIST, EMNIST).

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): two
zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte, 0x0B short, 0x0C int,
0x0D float, 0x0E double), the number of dimensions, each dimension as a big-endian
int32, then the values in row-major order, big-endian.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np
from pydantic import Field

from difftk.data.images import Decoded, ImageDataset, RawImages
from difftk.errors import DataError
from difftk.hookspecs import hookimpl

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
TRAIN_IMAGES = re.compile(r"train-images[-.]idx3-ubyte(\.gz)?$", re.IGNORECASE)
TEST_IMAGES = re.compile(r"(t10k|test)-images[-.]idx3-ubyte(\.gz)?$", re.IGNORECASE)
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file holds (gzip detected by its magic bytes, not the name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{path}: is a truncated or damaged gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise DataError(f"{path}: is not an IDX file (its first four bytes {raw[:4].hex()} are "
                        f"not a valid IDX magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: is a truncated IDX file (it ends inside its header)")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        what = "truncated" if found < expected else "malformed"
        raise DataError(f"{path}: is a {what} IDX file (its header promises shape "
                        f"{list(dims)}, {expected} bytes, but {found} bytes follow)")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def labels_beside(images: Path) -> Path | None:
    """The labels file named like an images file (train-images-idx3 -> train-labels-idx1)."""
    name = re.sub(r"images([-.])idx3", r"labels\1idx1", images.name, flags=re.IGNORECASE)
    for candidate in (name, name.removesuffix(".gz"), name + ".gz"):
        if candidate != images.name and (images.parent / candidate).is_file():
            return images.parent / candidate
    return None


def _pick(directory: Path, pattern: re.Pattern) -> Path | None:
    found = sorted(p for p in directory.iterdir() if p.is_file() and pattern.search(p.name))
    # The same file gzipped and raw counts once (prefer the raw one: no decompression).
    stems = {p.name.removesuffix(".gz") for p in found}
    if len(stems) > 1:
        raise DataError(f"{directory}: holds several IDX files of one split "
                        f"({', '.join(sorted(stems))}); set data.path to one of them")
    return min(found, key=lambda p: p.suffix == ".gz") if found else None


def _decode(images_path: Path) -> Decoded:
    images = read_idx(images_path)
    if images.ndim != 3:
        raise DataError(f"{images_path}: holds an array of shape {list(images.shape)}, "
                        f"not images [N, H, W]")
    labels_path = labels_beside(images_path)
    labels = read_idx(labels_path) if labels_path is not None else None
    if labels is not None and labels.ndim != 1:
        raise DataError(f"{labels_path}: holds an array of shape {list(labels.shape)}, "
                        f"not labels [N]")
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{labels_path}: holds {len(labels)} labels for the {len(images)} "
                        f"images of {images_path}")
    return Decoded(images[:, None], labels, str(images_path))


class Idx(ImageDataset):
    """MNIST-format IDX files, gzipped or raw (MNIST, Fashion-MNIST, KMNIST), with labels.

    ``path`` is a directory holding train-images-idx3-ubyte[.gz] (and t10k-images, the
    held-out split, and the matching -labels-idx1 files), or one images file.
    """

    name = "idx"
    path: str = Field(description="directory of MNIST-format files, or one images file")

    missing_hint: ClassVar[str] = ""  # what to do when the files are absent (subclasses say)

    def _files(self) -> tuple[Path, Path | None]:
        path = Path(self.path).expanduser()
        if path.is_file():
            return path, None
        if not path.is_dir():
            raise DataError(f"{path}: no such file or directory{self.missing_hint}")
        train, test = _pick(path, TRAIN_IMAGES), _pick(path, TEST_IMAGES)
        if train is None:
            raise DataError(f"{path}: holds no train-images-idx3-ubyte[.gz] file"
                            f"{self.missing_hint}")
        return train, test

    def class_names(self) -> list[str]:
        return []

    def decode(self) -> RawImages:
        train_path, test_path = self._files()
        train = _decode(train_path)
        test = _decode(test_path) if test_path is not None and self.heldout is None else None
        white = 255.0 if np.issubdtype(train.images.dtype, np.integer) else 1.0
        return RawImages(train, test, white=white, class_names=self.class_names())


class FashionMNIST(Idx):
    """Fashion-MNIST (Xiao et al. 2017): 60,000 + 10,000 28x28 clothing images, 10 classes.

    The default path is where Debian's and Ubuntu's dataset-fashion-mnist package puts the
    four gzipped IDX files; the official test split is the held-out set.
    """

    name = "fashion_mnist"
    path: str = Field("/usr/share/datasets/fashion-mnist",
                      description="directory of the four Fashion-MNIST IDX files")

    missing_hint: ClassVar[str] = (
        "; install the files with `sudo apt-get install dataset-fashion-mnist` (Debian, "
        "Ubuntu) or download the four .gz files from "
        "https://github.com/zalandoresearch/fashion-mnist into a directory and set data.path "
        "to it")

    def class_names(self) -> list[str]:
        return list(FASHION_CLASSES)


@hookimpl
def register_datasets(register):
    register(Idx)
    register(FashionMNIST)
