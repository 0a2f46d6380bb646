"""Image files as ``Items``: a folder of PNG / JPEG files or an EDM / EDM2 ``dataset_tool.py``
zip, each image decoded when it is read (in DataLoader workers, or by ``difftk data pack``).

Labels follow EDM's ``ImageFolderDataset`` (training/dataset.py) where a ``dataset.json``
is present (``{"labels": [[name, class], ...]}``, names relative to the root, sorted),
otherwise one sub-folder per class (torchvision's ImageFolder). Images are converted to RGB
(or greyscale), then fitted to ``resolution``: the shorter side scaled and the centre
cropped (improved-diffusion's ``center_crop_arr``: halve with a box filter while the image
is at least twice the target, then bicubic), or stretched. Without a resolution every image
must already have the first one's size; one that does not is named.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from difftk.data.items import Items
from difftk.errors import DataError

EXTENSIONS = {".png", ".jpg", ".jpeg"}


def decode_image(file, resolution: int | None, center_crop: bool, channels: int,
                 name: str | None = None) -> np.ndarray:
    """One image (a path or a binary file object) as uint8 [C, R, R]."""
    from PIL import Image, UnidentifiedImageError

    name = name or str(file)
    try:
        with warnings.catch_warnings():
            # PIL only warns between MAX_IMAGE_PIXELS and twice that; refuse both alike.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as img:
                img.load()
                img = img.convert("RGB" if channels == 3 else "L")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{name}: claims more than {Image.MAX_IMAGE_PIXELS:,} pixels, which "
                        "would exhaust memory (a decompression bomb or a damaged header); "
                        "remove or resize it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise DataError(f"{name}: is not a readable PNG or JPEG image ({exc})") from None
    if resolution is None:
        pass
    elif center_crop:
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


@dataclass
class Listing:
    """The images of a folder or zip: names (relative), class indices (-1: none), classes."""

    names: list[str]
    labels: list[int]
    classes: list[str]

    @property
    def labelled(self) -> bool:
        return bool(self.names) and self.labels[0] >= 0


def _edm_labels(meta: bytes | None, names: list[str], where: str) -> list[int] | None:
    """EDM's dataset.json labels for ``names`` (None when the file has none)."""
    if meta is None:
        return None
    try:
        pairs = json.loads(meta).get("labels")
    except (ValueError, AttributeError):
        raise DataError(f"{where}/dataset.json: is not EDM's dataset.json "
                        '({"labels": [[file, class], ...]})') from None
    if pairs is None:
        return None
    try:
        table = {str(f).replace("\\", "/"): int(c) for f, c in pairs}
    except (TypeError, ValueError):
        raise DataError(f"{where}/dataset.json: its labels are not [file, class] pairs") from None
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(f"{where}/dataset.json: has no label for {missing[0]} "
                        f"({len(missing)} images unlabelled)")
    labels = [table[n] for n in names]
    if min(labels) < 0:
        raise DataError(f"{where}/dataset.json: holds a negative class")
    return labels


def _by_folder(names: list[str], where: str) -> Listing:
    tops = [n.split("/", 1) for n in names]
    loose = [n for n, parts in zip(names, tops, strict=True) if len(parts) == 1]
    if not loose:
        classes = sorted({parts[0] for parts in tops})
        index = {c: i for i, c in enumerate(classes)}
        return Listing(names, [index[parts[0]] for parts in tops], classes)
    if len(loose) != len(names):
        nested = next(n for n in names if "/" in n)
        raise DataError(f"{where}: holds images both directly ({loose[0]}, ...) and in class "
                        f"sub-folders ({nested.split('/')[0]}, ...); use one layout")
    return Listing(names, [-1] * len(names), [])


def list_folder(root: Path) -> Listing:
    if not root.is_dir():
        raise DataError(f"{root}: no such directory")
    names = sorted(str(p.relative_to(root)).replace("\\", "/") for p in root.rglob("*")
                   if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not names:
        raise DataError(f"{root}: holds no PNG or JPEG images")
    meta = (root / "dataset.json").read_bytes() if (root / "dataset.json").is_file() else None
    labels = _edm_labels(meta, names, str(root))
    if labels is not None:
        return Listing(names, labels, [str(c) for c in range(max(labels) + 1)])
    return _by_folder(names, str(root))


def list_zip(path: Path) -> Listing:
    try:
        with zipfile.ZipFile(path) as z:
            names = sorted(n for n in z.namelist() if Path(n).suffix.lower() in EXTENSIONS)
            meta = z.read("dataset.json") if "dataset.json" in z.namelist() else None
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: is not a readable zip file ({exc})") from None
    if not names:
        raise DataError(f"{path}: holds no PNG or JPEG images")
    labels = _edm_labels(meta, names, str(path))
    if labels is not None:
        return Listing(names, labels, [str(c) for c in range(max(labels) + 1)])
    return _by_folder(names, str(path))


def list_images(path: Path) -> Listing:
    """The images of a folder or of a zip (EDM's dataset_tool.py output)."""
    if path.suffix.lower() == ".zip" and path.is_file():
        return list_zip(path)
    return list_folder(path)


class ImageFileItems(Items):
    """The images of a folder or zip, decoded at read time into uint8 [C, R, R].

    The zip is opened once per process on first read (a worker after the fork opens its own:
    a zip handle cannot be shared between processes)."""

    def __init__(self, root: Path, names: list[str], resolution: int | None, center_crop: bool,
                 channels: int):
        self.root, self.names = root, names
        self.resolution, self.center_crop, self.channels = resolution, center_crop, channels
        self.is_zip = root.suffix.lower() == ".zip" and root.is_file()
        self.source = str(root)
        self._zip = None
        self._shape: tuple[int, ...] | None = None
        if resolution is not None:
            self._shape = (channels, resolution, resolution)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"] = None
        return state

    def __len__(self) -> int:
        return len(self.names)

    @property
    def item_shape(self) -> tuple[int, ...]:
        if self._shape is None:  # the first image's own size
            self._shape = tuple(self._decode(0).shape)
            if self._shape[1] != self._shape[2]:
                raise DataError(f"{self.root}/{self.names[0]}: is {self._shape[2]}x"
                                f"{self._shape[1]}, not square; set data.resolution")
        return self._shape

    @property
    def stored_dtype(self) -> torch.dtype:
        return torch.uint8

    def _open(self, name: str):
        if not self.is_zip:
            return self.root / name
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.root)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{self.root}: could not be opened ({exc})") from None
        try:
            return io.BytesIO(self._zip.read(name))
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{self.root}/{name}: could not be read ({exc})") from None

    def _decode(self, i: int) -> np.ndarray:
        name = self.names[i]
        try:
            file = self._open(name)
        except FileNotFoundError:
            raise DataError(f"{self.root}/{name}: no longer exists") from None
        return decode_image(file, self.resolution, self.center_crop, self.channels,
                            name=f"{self.root}/{name}")

    def read(self, indices: np.ndarray) -> torch.Tensor:
        shape = self.item_shape
        out = np.empty((len(indices), *shape), dtype=np.uint8)
        for row, i in enumerate(np.asarray(indices, dtype=np.int64)):
            image = self._decode(int(i))
            if image.shape != shape:
                raise DataError(f"{self.root}/{self.names[i]}: is {image.shape[2]}x"
                                f"{image.shape[1]} but {self.names[0]} is {shape[2]}x{shape[1]}; "
                                "set data.resolution (or --resolution) to fit them to one size")
            out[row] = image
        return torch.from_numpy(out)

    def digest(self) -> str:
        """Names, sizes and modification times of the files, and how they are decoded."""
        h = hashlib.sha256(json.dumps([self.resolution, self.center_crop, self.channels]).encode())
        if self.is_zip:
            st = self.root.stat()
            h.update(f"{self.root.resolve()} {st.st_size} {st.st_mtime_ns}".encode())
        else:
            for name in self.names:
                st = (self.root / name).stat()
                h.update(f"{name} {st.st_size} {st.st_mtime_ns}".encode())
        return h.hexdigest()[:32]
