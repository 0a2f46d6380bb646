"""What ``difftk data pack SOURCE`` reads: any image source, as the data set that reads it.

SOURCE is a path; its kind is recognised (or named with ``--as``) and read by the matching
built-in data set, so packing decodes exactly as training on the source would:

- a recipe (``.toml``): its ``[data]`` section, whatever data set it names;
- an EDM / EDM2 ``dataset_tool.py`` zip, or a folder of images: ``folder``;
- a Hugging Face ``save_to_disk`` folder or parquet files: ``hf_datasets``;
- a ``.npz`` / ``.npy`` file: ``npz``;
- CIFAR-10's python batches: ``cifar10``; MNIST-format IDX files: ``idx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difftk.data.images import ImageDataset, RawImages
from difftk.data.items import Items
from difftk.data.packed import MANIFEST
from difftk.errors import DataError


@dataclass
class PackSource:
    data: ImageDataset  # the data set that reads the source
    raw: RawImages  # its splits as stored values (lazy where the source is files)

    def num_classes(self) -> int:
        """Classes of a labelled source: as it names them, else 1 + the largest label."""
        splits = self.splits()
        if splits["train"][1] is None:
            return 0
        return self.raw.num_classes or len(self.raw.class_names or []) or 1 + max(
            int(y.max()) for _, y in splits.values() if y is not None and len(y))

    def splits(self) -> dict[str, tuple[Items, np.ndarray | None]]:
        out = {"train": (self.raw.train.items, self.raw.train.labels)}
        if self.raw.test is not None:
            out["test"] = (self.raw.test.items, self.raw.test.labels)
        return out


def source_kind(path: Path, packed_ok: bool = False) -> str:
    """The built-in data set that reads ``path`` (a packed set itself where ``packed_ok``)."""
    if path.suffix == ".toml":
        return "recipe"
    if (path / MANIFEST).is_file() and packed_ok:
        return "packed"
    if (path / MANIFEST).is_file():
        raise DataError(f"{path}: is already a packed data set (it holds {MANIFEST}); train on "
                        'it with data.name = "packed"')
    if path.suffix.lower() == ".zip":
        return "folder"
    if path.suffix in (".npz", ".npy"):
        return "npz"
    if path.suffix == ".parquet":
        return "hf_datasets"
    if not path.is_dir():
        raise DataError(f"{path}: no such file or directory")
    names = {p.name for p in path.iterdir()}
    if names & {"dataset_dict.json", "state.json"} or any(n.endswith(".parquet") for n in names):
        return "hf_datasets"
    if "data_batch_1" in names or "cifar-10-batches-py" in names:
        return "cifar10"
    if any("idx3-ubyte" in n for n in names):
        return "idx"
    return "folder"


def open_source(path: Path, kind: str | None = None, resolution: int | None = None,
                center_crop: bool = True, channels: int | None = None,
                sets: list[str] | None = None, packed_ok: bool = False) -> PackSource:
    """The data set that reads ``path`` (``kind``: a data set name, else recognised), set to
    read lazily and to fit images to ``resolution``."""
    from pydantic import ValidationError

    from difftk.recipe import load_recipe
    from difftk.registry import default_registry

    kind = kind or source_kind(path, packed_ok)
    if kind == "recipe":
        data = load_recipe(path, sets).parts["data"]
    else:
        cls = default_registry().get("datasets", kind).cls
        if "path" not in cls.model_fields:
            raise DataError(f"the {kind} data set reads no path; name it in a recipe and pack "
                            "the recipe")
        try:
            data = cls.model_validate({"path": str(path)})
        except ValidationError as exc:
            raise DataError(f"{path}: cannot be read as {kind} ({exc.errors()[0]['msg']})") from None
    if not isinstance(data, ImageDataset):
        raise DataError(f"{path}: the {data.name} data set does not hold images; only image "
                        "sets are packed")
    update: dict = {"pipeline": "loader"}
    fields = type(data).model_fields
    if resolution is not None:
        if "resolution" not in fields:
            raise DataError(f"{path}: the {data.name} data set has a fixed size; leave out "
                            "--resolution")
        update["resolution"] = resolution
    if "center_crop" in fields and resolution is not None:
        update["center_crop"] = center_crop
    if channels is not None and "channels" in fields:
        update["channels"] = channels
    data = data.model_copy(update=update)
    return PackSource(data, data.decode())


def crop_rule(data: ImageDataset) -> str:
    """How images were fitted to the resolution, for the manifest."""
    resolution = getattr(data, "resolution", None)
    if resolution is None:
        return "none (stored at their own size)"
    how = "shorter side scaled, centre cropped (improved-diffusion center_crop_arr)" \
        if getattr(data, "center_crop", True) else "stretched (bicubic)"
    return f"{how} to {resolution}x{resolution}"
