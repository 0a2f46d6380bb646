"""Packed data sets: fixed-size ``.npy`` shards of stored values, memory-mapped, plus a manifest.

A packed set is a folder::

    manifest.json              what is stored, per split: counts, shards, checksums, statistics
    train-00000.npy, ...       uint8 [n, C, H, W] (or the source's dtype for latents/vectors)
    train-labels.npy           int64 [N], when the set has labels
    test-00000.npy, ...        a held-out split, when the source has one

Why this format (docs/data.md has the read-speed figures): the batch plan asks for random
access by index (item i of the run's permutation), exact resume and world-size independence,
so the reader must fetch any item in O(1) without reading its neighbours. A ``.npy`` shard is
a 128-byte header and one C-order array: numpy memory-maps it, the page cache holds it (not
the process: RssAnon stays flat however large the set), and a batch is one fancy index per
shard. It needs no package beyond numpy, any tool reads it, and shards make parallel and
resumable packing and per-file checksums natural. Sequential formats (WebDataset's tar
streams) give no random access; MosaicML's MDS and litdata add random access through
their own reader and a package; safetensors maps one file but has no fancy indexing.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from difftk.data.items import Items, PixelScaling
from difftk.errors import DataError

MANIFEST = "manifest.json"
FORMAT = "difftk-packed"
VERSION = 1


class ShardRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = Field(pattern=r"^[\w.-]+\.npy$")
    count: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Moments(BaseModel):
    """Per-channel count, mean and sum of squared deviations of the stored values (float64),
    merged with Chan et al.'s update (data/stats.py); min and max over all values."""

    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=0)  # values per channel
    mean: list[float]
    m2: list[float]
    minimum: float
    maximum: float


class SplitRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=0)
    shards: list[ShardRecord]
    labels: ShardRecord | None = None
    moments: Moments | None = None
    skipped: list[str] = Field(default_factory=list)  # source items left out, with the reason


class Manifest(BaseModel):
    """Everything a reader needs to trust and use the shards without opening a source file."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["difftk-packed"] = FORMAT
    version: int = VERSION
    kind: Literal["image", "vector"] = "image"
    item_shape: list[int] = Field(min_length=1)
    dtype: str  # numpy dtype name of the stored values
    white: float | None = Field(None, gt=0)  # stored value of a white pixel (images)
    resolution: int | None = None
    crop: str = ""  # how the source images were fitted to the resolution
    source: str = ""
    class_names: list[str] = Field(default_factory=list)
    num_classes: int = Field(0, ge=0)
    codec: dict | None = None  # identity of the encoder for latent sets (None: pixels)
    splits: dict[str, SplitRecord]


def read_manifest(root: Path) -> Manifest:
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(f"{root}: holds no {MANIFEST}; pack a data set into it with "
                        "`difftk data pack SOURCE -o DIR`")
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DataError(f"{path}: is not a difftk packed-data manifest ({where}: "
                        f"{first['msg']})") from None


def write_atomic(path: Path, data: bytes) -> None:
    """A file written, fsynced and renamed into place: a crash leaves the old one or the new."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_manifest(root: Path, manifest: Manifest) -> None:
    write_atomic(root / MANIFEST, manifest.model_dump_json(indent=1).encode())


def file_sha256(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def open_shard(path: Path, dtype: np.dtype, item_shape: tuple[int, ...], count: int) -> np.ndarray:
    """A shard memory-mapped read-only, refused with its name when it is missing, truncated
    or does not hold what the manifest says."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: is missing from the packed data set (the manifest lists it)"
                        ) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: is not a readable shard (truncated or damaged: {exc}); pack "
                        "the data set again, or run `difftk data verify` on its folder") from None
    if array.dtype != dtype or tuple(array.shape) != (count, *item_shape):
        raise DataError(f"{path}: holds {array.dtype} {list(array.shape)} but the manifest "
                        f"says {np.dtype(dtype)} {[count, *item_shape]}; the shards and the "
                        "manifest do not belong together")
    return array


class PackedItems(Items):
    """One split of a packed set: items by global index, read from memory-mapped shards.

    Shards are opened on first use in each process (DataLoader workers open their own maps
    after the fork), so pickling one to a worker sends paths, not pages."""

    def __init__(self, root: Path, manifest: Manifest, split: str,
                 scaling: PixelScaling | None = None):
        self.root, self.manifest, self.split = root, manifest, split
        self.record = manifest.splits[split]
        self.scaling = scaling
        self.source = f"{root}[{split}]"
        counts = np.array([s.count for s in self.record.shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        if int(self.starts[-1]) != self.record.count:
            raise DataError(f"{root / MANIFEST}: split {split} counts {self.record.count} items "
                            f"but its shards hold {int(self.starts[-1])}")
        self._np_dtype = np.dtype(manifest.dtype)
        self._maps: list[np.ndarray | None] = [None] * len(self.record.shards)
        for s in self.record.shards:  # a missing or truncated shard is named now, not mid-run
            self._check_size(root / s.file, s.count)

    def _check_size(self, path: Path, count: int) -> None:
        """The file is at least as long as its items (header + count x item bytes)."""
        need = count * int(np.prod(self.item_shape)) * self._np_dtype.itemsize
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DataError(f"{path}: is missing from the packed data set (the manifest lists "
                            "it)") from None
        if size < need:
            raise DataError(f"{path}: is truncated ({size:,} bytes, its {count} items need "
                            f"{need:,}); pack the data set again")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = [None] * len(self._maps)
        return state

    def __len__(self) -> int:
        return self.record.count

    @cached_property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest.item_shape)

    @property
    def stored_dtype(self) -> torch.dtype:
        return torch.from_numpy(np.empty(0, dtype=self._np_dtype)).dtype

    def shard(self, s: int) -> np.ndarray:
        if self._maps[s] is None:
            rec = self.record.shards[s]
            self._maps[s] = open_shard(self.root / rec.file, self._np_dtype, self.item_shape,
                                       rec.count)
        return self._maps[s]

    def read(self, indices: np.ndarray) -> torch.Tensor:
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.item_shape), dtype=self._np_dtype)
        order = np.argsort(indices, kind="stable")  # each shard read in ascending order
        ordered = indices[order]
        shard_of = np.searchsorted(self.starts, ordered, side="right") - 1
        bounds = np.flatnonzero(np.diff(shard_of)) + 1
        for group in np.split(np.arange(len(ordered)), bounds):
            if not len(group):
                continue
            s = int(shard_of[group[0]])
            try:
                out[order[group]] = self.shard(s)[ordered[group] - self.starts[s]]
            except OSError as exc:  # a file that went away or a disk error under the map
                raise DataError(f"{self.root / self.record.shards[s].file}: could not be read "
                                f"({exc})") from None
        return torch.from_numpy(out)

    def labels(self) -> np.ndarray | None:
        rec = self.record.labels
        if rec is None:
            return None
        return np.array(open_shard(self.root / rec.file, np.dtype(np.int64), (), rec.count))

    def digest(self) -> str:
        h = hashlib.sha256(json.dumps(self.manifest.item_shape).encode())
        for s in self.record.shards:
            h.update(s.sha256.encode())
        return h.hexdigest()[:32]


def verify(root: Path, progress=None) -> list[str]:
    """Every shard's and label file's checksum against the manifest; the problems found."""
    manifest = read_manifest(root)
    problems = []
    for split in manifest.splits.values():
        for rec in split.shards + ([split.labels] if split.labels else []):
            path = root / rec.file
            if not path.is_file():
                problems.append(f"{path}: is missing")
            elif file_sha256(path) != rec.sha256:
                problems.append(f"{path}: its checksum does not match the manifest (damaged)")
            if progress is not None:
                progress(rec.count)
    return problems
