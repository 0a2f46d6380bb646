"""A set of 0-255 images read by index, from wherever a user keeps it: what ``difftk
eval-stats`` makes reference statistics of and ``difftk eval FOLDER`` scores.

- a folder or zip of images (``difftk sample --format png-dir`` writes one), a packed set,
  an IDX / CIFAR-10 / Hugging Face folder or a recipe: the data set that reads it
  (data/pack_source.py), lazily, images at their own size;
- an ``.npz`` holding ``arr_0`` (uint8 N x H x W x C: the ADM evaluator's and DiT's
  ``sample_ddp.py`` sample batches) or difftk's ``samples`` with ``value_range`` (``difftk
  sample --format npz``), turned into pixels exactly as the PNG writer turns them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from difftk.data.items import ArrayItems, Items
from difftk.errors import DifftkError


def _npz_images(path: Path) -> Items:
    try:
        with np.load(path, allow_pickle=False) as f:
            if "arr_0" in f.files:
                images = f["arr_0"]
                if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
                    raise DifftkError(f"{path}: arr_0 is {images.dtype} {images.shape}, not "
                                      "uint8 images N x H x W x C")
                return ArrayItems(np.moveaxis(images, -1, 1), str(path))
            if "samples" not in f.files:
                raise DifftkError(f"{path}: holds neither arr_0 (uint8 images) nor samples")
            samples, value_range = f["samples"], f["value_range"] if "value_range" in f.files \
                else np.array([-1.0, 1.0])
    except DifftkError:
        raise
    except Exception as exc:
        raise DifftkError(f"{path}: not a readable .npz ({type(exc).__name__})") from None
    if samples.ndim != 4 or samples.shape[1] not in (1, 3):
        raise DifftkError(f"{path}: samples of shape {samples.shape[1:]} are not images with "
                          "1 or 3 channels")
    ranges = np.broadcast_to(np.asarray(value_range, dtype=np.float64).reshape(-1, 2),
                             (samples.shape[1], 2))
    lo, hi = ranges[:, 0].reshape(1, -1, 1, 1), ranges[:, 1].reshape(1, -1, 1, 1)
    u = (samples.astype(np.float64) - lo) / (hi - lo)  # as eval/sample_files.py's to_uint8
    return ArrayItems(np.round(np.clip(u, 0, 1) * 255).astype(np.uint8), str(path))


def open_image_set(path: Path, split: str = "train") -> Items:
    """The 0-255 images of ``path`` (its ``split``: train or test, for a data set)."""
    from difftk.data.pack_source import open_source

    path = Path(path)
    if path.suffix == ".npz" and path.is_file():
        return _npz_images(path)
    source = open_source(path, packed_ok=True)
    splits = source.splits()
    if split not in splits:
        raise DifftkError(f"{path}: has no {split} split (splits: {', '.join(splits)})")
    items = splits[split][0]
    if not len(items):
        raise DifftkError(f"{path}: the {split} split holds no images")
    return items
