"""A local Hugging Face data set (``pip install "difftk[hf]"``; usable where ``datasets``
is installed): a ``save_to_disk`` folder, a folder of images (``imagefolder``) or parquet
files. Nothing is downloaded at run time: a hub name is refused with the two lines that
save it to disk once.

Images go through the same steps as the other image sets: decoded as the ``folder`` data set
decodes a file (RGB or greyscale, shorter side scaled and centre-cropped), then scaled,
split and limited by ``ImageDataset.bundle``. A split named test (or validation) is the
held-out split unless ``heldout`` is set; a ClassLabel column gives the labels and names.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from difftk.data.image_files import decode_image
from difftk.data.images import Decoded, ImageDataset, RawImages, channels_first
from difftk.data.items import Items
from difftk.errors import DataError
from difftk.hookspecs import hookimpl
from difftk.optional_package import OptionalPackage

HELDOUT_SPLITS = ("test", "validation", "valid", "val")
IMAGE_COLUMNS = ("image", "img", "pixel_values", "images")
LABEL_COLUMNS = ("label", "labels", "fine_label", "class")


class HfDatasets(ImageDataset):
    """A local Hugging Face data set (save_to_disk folder, image folder or parquet); no hub."""

    name = "hf_datasets"
    requires: ClassVar[tuple[OptionalPackage, ...]] = (
        OptionalPackage("datasets", 'pip install "difftk[hf]"'),)
    path: str = Field(description="a folder written by save_to_disk, a folder of images "
                      "(imagefolder layout), or a .parquet file or folder of them")
    split: str = Field("train", min_length=1, description="split to train on")
    image_column: str | None = Field(None, description="column of images; default: the first "
                                     "Image column, else one of " + ", ".join(IMAGE_COLUMNS))
    label_column: str | None = Field(None, description='column of class labels; default: the '
                                     'first ClassLabel column, else "label" if present; "" '
                                     "for none")
    resolution: int | None = Field(None, ge=4, description="side of the square images; "
                                   "default: the images' own size (they must all share it)")
    center_crop: bool = Field(True, description="scale the shorter side to the resolution and "
                              "crop the centre; false: stretch")
    channels: Literal[1, 3] = Field(3, description="3: RGB, 1: greyscale (Image columns)")

    def _open(self):
        """The DatasetDict (or Dataset) at ``path``, from local files only."""
        root = Path(self.path).expanduser()
        if not root.exists():
            raise DataError(
                f'{self.path}: is not a local path, and difftk does not download data sets '
                'while training; save it once with datasets.load_dataset("NAME")'
                '.save_to_disk("DIR") and set data.path to DIR')
        import datasets

        try:
            if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
                return datasets.load_from_disk(str(root))
            parquet = [root] if root.suffix == ".parquet" else sorted(root.rglob("*.parquet"))
            if parquet:
                return datasets.load_dataset("parquet", data_files=[str(p) for p in parquet])
            return datasets.load_dataset("imagefolder", data_dir=str(root))
        except (OSError, ValueError, FileNotFoundError, datasets.exceptions.DatasetGenerationError,
                datasets.exceptions.DatasetNotFoundError) as exc:
            raise DataError(f"{self.path}: is not a readable data set ({exc})") from None

    def _columns(self, table) -> tuple[str, str | None]:
        import datasets

        features = table.features
        image = self.image_column or next(
            (c for c, f in features.items() if isinstance(f, datasets.Image)),
            next((c for c in IMAGE_COLUMNS if c in features), None))
        if image is None or image not in features:
            raise DataError(f"{self.path}: has no image column {image or ''} (columns: "
                            f"{', '.join(features)}); set data.image_column")
        if self.label_column == "":
            return image, None
        label = self.label_column or next(
            (c for c, f in features.items() if isinstance(f, datasets.ClassLabel)),
            next((c for c in LABEL_COLUMNS if c in features), None))
        if label is not None and label not in features:
            raise DataError(f"{self.path}: has no column \"{label}\" (columns: "
                            f"{', '.join(features)})")
        return image, label

    def _decode(self, table, image: str, label: str | None, source: str
                ) -> tuple[Decoded, float]:
        """(raw pixels [N, C, H, W] with labels, white value) of one split: rows read by
        index from the memory-mapped Arrow table, decoded whole when the set is small
        (``keep_lazy``)."""
        if not len(table):
            raise DataError(f"{source}: holds no rows")
        labels = np.asarray(table[label], dtype=np.int64) if label is not None else None
        rows = HfRows(table, image, self.resolution, self.center_crop, self.channels, source)
        lazy = self.keep_lazy(rows)
        pixels = None if lazy else rows.read(np.arange(len(rows))).numpy()
        white = 255.0
        if not rows.is_image:  # numbers: white 1 for floats in [0, 1] (the first rows if lazy)
            seen = rows.read(np.arange(min(len(rows), 256))).numpy() if lazy else pixels
            white = 1.0 if seen.dtype.kind == "f" and seen.min() >= 0 and seen.max() <= 1 \
                else 255.0
        return Decoded(rows if lazy else pixels, labels, source), white

    def decode(self) -> RawImages:
        loaded = self._open()
        splits: dict[str, Any] = dict(loaded) if hasattr(loaded, "keys") else {"train": loaded}
        if self.split not in splits:
            raise DataError(f"{self.path}: has no split \"{self.split}\" (splits: "
                            f"{', '.join(splits)}); set data.split")
        table = splits[self.split]
        image, label = self._columns(table)
        train, white = self._decode(table, image, label, f"{self.path}[{self.split}]")
        test = None
        held = next((s for s in HELDOUT_SPLITS if s in splits and s != self.split), None)
        if held is not None and self.heldout is None:
            test = self._decode(splits[held], image, label, f"{self.path}[{held}]")[0]
        names: list[str] = []
        feature = table.features.get(label) if label is not None else None
        if feature is not None and hasattr(feature, "names"):
            names = list(feature.names)
        return RawImages(train, test, white=white, num_classes=len(names) or None,
                           class_names=names)


def _file(cell: dict[str, Any]):
    """An undecoded Image cell as something PIL opens: its bytes, else its file."""
    return io.BytesIO(cell["bytes"]) if cell.get("bytes") else Path(cell["path"])


class HfRows(Items):
    """Rows of an Arrow table (memory-mapped by ``datasets``), decoded when read: an Image
    cell as the ``folder`` set decodes a file, an array cell as ``npz`` reads arrays."""

    def __init__(self, table, column: str, resolution: int | None, center_crop: bool,
                 channels: int, source: str):
        import datasets

        self.is_image = isinstance(table.features[column], datasets.Image)
        table = table.select_columns([column])
        if self.is_image:
            table = table.cast_column(column, datasets.Image(decode=False))
        else:
            table = table.with_format("numpy")
        self.table, self.column = table, column
        self.resolution, self.center_crop, self.channels = resolution, center_crop, channels
        self.source = source
        first = self._decode([0])[0]
        self._shape = tuple(first.shape)
        if self.is_image and resolution is None and first.shape[1] != first.shape[2]:
            raise DataError(f"{source}: images are {first.shape[2]}x{first.shape[1]}, not "
                            "square; set data.resolution")
        self._dtype = first.dtype

    def __len__(self) -> int:
        return len(self.table)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def stored_dtype(self):
        return torch.from_numpy(np.empty(0, dtype=self._dtype)).dtype

    def _decode(self, rows: list[int]) -> list[np.ndarray]:
        cells = self.table[rows][self.column]
        if self.is_image:
            return [decode_image(_file(c), self.resolution, self.center_crop, self.channels,
                                 name=f"{self.source} row {r}") for r, c in zip(rows, cells,
                                                                                strict=True)]
        array = channels_first(np.asarray(cells), "auto", self.source)
        return list(array)

    def read(self, indices: np.ndarray):
        rows = [int(i) for i in np.asarray(indices, dtype=np.int64)]
        items = self._decode(rows) if rows else []
        for r, a in zip(rows, items, strict=True):
            if a.shape != self._shape:
                raise DataError(f"{self.source} row {r}: an image of shape {list(a.shape)}, not "
                                f"{list(self._shape)} as row 0; set data.resolution")
        out = np.stack(items) if items else np.empty((0, *self._shape), self._dtype)
        return torch.from_numpy(out)

    def digest(self) -> str:
        import hashlib

        return hashlib.sha256(f"{self.table._fingerprint} {self.resolution} {self.center_crop} "
                              f"{self.channels}".encode()).hexdigest()[:32]


@hookimpl
def register_datasets(register):
    register(HfDatasets)  # listed as needing difftk[hf] where datasets is missing
