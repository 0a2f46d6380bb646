"""CIFAR-10 from its python-pickle batches (Krizhevsky 2009; cs.toronto.edu/~kriz/cifar.html).

The "python version" archive unpacks to cifar-10-batches-py/: data_batch_1..5 (training,
10,000 images each), test_batch (the held-out split) and batches.meta (class names).
Each batch is a pickled dict with b"data", uint8 [10000, 3072] (1024 red, then 1024
green, then 1024 blue values of a 32x32 image, row-major) and b"labels", a list of ints.
The batches are pickles, so they are read with an unpickler that accepts only the
builtins and numpy array constructors they contain: a crafted file cannot run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from pydantic import Field

from difftk.data.images import Decoded, ImageDataset, RawImages
from difftk.errors import DataError
from difftk.hookspecs import hookimpl

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck"]
# The only globals a CIFAR batch refers to: numpy's array reconstruction.
ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
           ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
           ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}
HINT = ("; download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, unpack it and set "
        "data.path to its cifar-10-batches-py directory")


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refuses to load {module}.{name}")
        return super().find_class(module, name)


def read_batch(path: Path) -> dict:
    """One pickled batch as a dict with str keys."""
    try:
        with path.open("rb") as f:
            raw = _SafeUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # pickle raises many types on damaged input
        raise DataError(f"{path}: is not a readable CIFAR-10 pickle batch "
                        f"({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: is not a CIFAR-10 batch (it holds a {type(raw).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def decode_batches(paths: list[Path]) -> Decoded:
    images, labels = [], []
    for path in paths:
        batch = read_batch(path)
        data, y = batch.get("data"), batch.get("labels")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                or data.shape[1] != 3072 or not isinstance(y, list) or len(y) != len(data):
            raise DataError(f"{path}: is not a CIFAR-10 batch (it needs uint8 data [N, 3072] "
                            f"and as many labels)")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(y, dtype=np.int64))
    return Decoded(np.concatenate(images), np.concatenate(labels), str(paths[0].parent))


class Cifar10(ImageDataset):
    """CIFAR-10's 50,000 + 10,000 32x32 colour images in 10 classes, from the python batches."""

    name = "cifar10"
    path: str = Field("data/cifar-10-batches-py", description=(
        "the cifar-10-batches-py directory (or the directory that holds it)"))

    def directory(self) -> Path:
        path = Path(self.path).expanduser()
        if (path / "cifar-10-batches-py").is_dir():
            path = path / "cifar-10-batches-py"
        if not path.is_dir():
            raise DataError(f"{path}: no such directory{HINT}")
        missing = [f for f in TRAIN_FILES if not (path / f).is_file()]
        if missing:
            raise DataError(f"{path / missing[0]}: no such file{HINT}")
        return path

    def decode(self) -> RawImages:
        root = self.directory()
        train = decode_batches([root / f for f in TRAIN_FILES])
        test = None
        if self.heldout is None:
            if not (root / "test_batch").is_file():
                raise DataError(f"{root / 'test_batch'}: no such file; restore it or set "
                                f"data.heldout to hold out training images instead")
            test = decode_batches([root / "test_batch"])
        names = CLASSES
        if (root / "batches.meta").is_file():
            meta = read_batch(root / "batches.meta").get("label_names")
            if isinstance(meta, list):
                names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta]
        return RawImages(train, test, white=255.0, num_classes=10, class_names=names)


@hookimpl
def register_datasets(register):
    register(Cifar10)
