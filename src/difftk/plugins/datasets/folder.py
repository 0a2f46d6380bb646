"""A directory of PNG / JPEG images, one sub-folder per class, decoded once and cached.

Images are converted to RGB (or greyscale), scaled so the shorter side equals the
resolution and centre-cropped (improved-diffusion's ``center_crop_arr``: halve with a
box filter while the image is at least twice the target, then bicubic), or stretched.
The decoded uint8 array is cached as an .npz keyed by every file's path, size and
modification time and by the decoding parameters, so a second run does not decode again.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from difftk.data.dataset import DataBundle
from difftk.data.images import Decoded, ImageDataset
from difftk.errors import DataError
from difftk.hookspecs import hookimpl

EXTENSIONS = {".png", ".jpg", ".jpeg"}
CACHE_VERSION = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "difftk" / "folder"


def list_images(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under root with their class index: sub-folders are classes (sorted),
    images directly in root make an unlabelled set; both at once is refused."""
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")

    def images_in(d: Path) -> list[Path]:
        return sorted(p for p in d.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())

    loose = sorted(p for p in root.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and images_in(d))
    if loose and classes:
        raise DataError(f"{root}: holds images both directly ({loose[0].name}, ...) and in "
                        f"class sub-folders ({', '.join(classes[:3])}); use one layout")
    if loose:
        return loose, [-1] * len(loose), []
    files, labels = [], []
    for index, name in enumerate(classes):
        found = images_in(root / name)
        files += found
        labels += [index] * len(found)
    if not files:
        raise DataError(f"{root}: holds no PNG or JPEG images")
    return files, labels, classes


def decode_image(path: Path, resolution: int, center_crop: bool, channels: int) -> np.ndarray:
    """One file as uint8 [C, R, R]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; refuse both alike.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = img.convert("RGB" if channels == 3 else "L")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: claims more than {Image.MAX_IMAGE_PIXELS:,} pixels, which "
                        "would exhaust memory (a decompression bomb or a damaged header); "
                        "remove or resize it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise DataError(f"{path}: is not a readable PNG or JPEG image ({exc})") from None
    if center_crop:
        while min(img.size) >= 2 * resolution:
            img = img.resize(tuple(s // 2 for s in img.size), resample=Image.Resampling.BOX)
        scale = resolution / min(img.size)
        img = img.resize(tuple(max(resolution, round(s * scale)) for s in img.size),
                         resample=Image.Resampling.BICUBIC)
        left, top = (img.size[0] - resolution) // 2, (img.size[1] - resolution) // 2
        img = img.crop((left, top, left + resolution, top + resolution))
    else:
        img = img.resize((resolution, resolution), resample=Image.Resampling.BICUBIC)
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


class Folder(ImageDataset):
    """A directory of PNG/JPEG images (sub-folders as classes), resized and centre-cropped."""

    name = "folder"
    path: str = Field(description="directory of images, or of one sub-folder per class")
    resolution: int = Field(32, ge=4, description="side of the square images, in pixels")
    center_crop: bool = Field(True, description=(
        "scale the shorter side to the resolution and crop the centre; false: stretch"))
    channels: Literal[1, 3] = Field(3, description="3: RGB, 1: greyscale")
    cache: bool = Field(True, description="keep the decoded array in cache_dir for later runs")
    cache_dir: str | None = Field(None, description=(
        "where decoded arrays are cached; default $XDG_CACHE_HOME/difftk/folder"))

    def _cache_file(self, root: Path, files: list[Path]) -> Path:
        key = {"version": CACHE_VERSION, "root": str(root.resolve()),
               "resolution": self.resolution, "center_crop": self.center_crop,
               "channels": self.channels,
               "files": [(str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns)
                         for f in files]}
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:20]
        base = Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()
        return base / f"{root.name or 'images'}-{digest}.npz"

    def decoded(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(uint8 images [N, C, R, R], labels [N] (-1: none), class names), from the cache
        when the files and parameters are unchanged."""
        root = Path(self.path).expanduser()
        files, labels, classes = list_images(root)
        cache = self._cache_file(root, files) if self.cache else None
        if cache is not None and cache.is_file():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    return z["images"], z["labels"], [str(c) for c in z["classes"]]
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache is rebuilt below
        images = np.stack([decode_image(f, self.resolution, self.center_crop, self.channels)
                           for f in files])
        label_array = np.asarray(labels, dtype=np.int64)
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

    def load(self) -> DataBundle:
        images, labels, classes = self.decoded()
        decoded = Decoded(images, labels if classes else None, self.path)
        return self.bundle(decoded, None, white=255.0,
                           num_classes=len(classes) if classes else None, class_names=classes)


@hookimpl
def register_datasets(register):
    register(Folder)
