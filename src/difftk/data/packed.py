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
from dataclasses import dataclass
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


@dataclass
class Shard:
    """An open shard: its file descriptor and where its items start."""

    path: Path
    fd: int
    offset: int  # bytes before item 0 (the .npy header)
    count: int
    need: int  # bytes the file must have
    array: np.ndarray  # the items, memory-mapped read-only


def open_shard(path: Path, dtype: np.dtype, item_shape: tuple[int, ...], count: int) -> Shard:
    """A shard opened for reading, refused with its name when it is missing, truncated or
    does not hold what the manifest says."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise DataError(f"{path}: is missing from the packed data set (the manifest lists it)"
                        ) from None
    except OSError as exc:
        raise DataError(f"{path}: could not be opened ({exc.strerror})") from None
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            version = np.lib.format.read_magic(f)
            header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            shape, fortran, stored = header(f)
            offset = f.tell()
    except (OSError, ValueError) as exc:
        os.close(fd)
        raise DataError(f"{path}: is not a readable shard (truncated or damaged: {exc}); pack "
                        "the data set again, or run `difftk data verify` on its folder") from None
    if stored != dtype or tuple(shape) != (count, *item_shape) or fortran:
        os.close(fd)
        raise DataError(f"{path}: holds {stored} {list(shape)} but the manifest says "
                        f"{np.dtype(dtype)} {[count, *item_shape]}; the shards and the "
                        "manifest do not belong together")
    size = os.fstat(fd).st_size
    need = offset + count * int(np.prod(item_shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if size < need:
        os.close(fd)
        raise DataError(f"{path}: is truncated ({size:,} bytes, its {count} items need "
                        f"{need:,}); pack the data set again")
    array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=(count, *item_shape))
    return Shard(path, fd, offset, count, need, array)


class PackedItems(Items):
    """One split of a packed set: items by global index, read from the shards.

    Items are gathered from read-only memory maps by one fancy index per shard: the pages
    belong to the page cache (a set larger than memory leaves the process's anonymous
    memory flat). Each shard's size is checked before it is read, so a shard truncated under
    a run gives an error that names it rather than SIGBUS (a file deleted under a run is
    still read: its pages live while it is open). Shards are opened on first use in each
    process: a DataLoader worker opens its own."""

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
        self._open: list[Shard | None] = [None] * len(self.record.shards)
        self._pid = os.getpid()
        for s in range(len(self.record.shards)):  # a bad shard is named now, not mid-run
            shard = self.shard(s)
            del shard.array
            os.close(shard.fd)
        self._open = [None] * len(self._open)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_open"] = [None] * len(self._open)
        return state

    def __len__(self) -> int:
        return self.record.count

    @cached_property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.manifest.item_shape)

    @cached_property
    def item_bytes(self) -> int:
        return int(np.prod(self.item_shape, dtype=np.int64)) * self._np_dtype.itemsize

    @property
    def stored_dtype(self) -> torch.dtype:
        return torch.from_numpy(np.empty(0, dtype=self._np_dtype)).dtype

    def shard(self, s: int) -> Shard:
        if self._pid != os.getpid():  # forked: descriptors are shared, offsets are not used,
            self._open = [None] * len(self._open)  # but a worker keeps its own set
            self._pid = os.getpid()
        if self._open[s] is None:
            rec = self.record.shards[s]
            self._open[s] = open_shard(self.root / rec.file, self._np_dtype, self.item_shape,
                                       rec.count)
        return self._open[s]

    def read(self, indices: np.ndarray) -> torch.Tensor:
        indices = np.asarray(indices, dtype=np.int64)
        unique, inverse = np.unique(indices, return_inverse=True)
        out = np.empty((len(unique), *self.item_shape), dtype=self._np_dtype)
        if len(unique) and (unique[0] < 0 or unique[-1] >= len(self)):
            raise IndexError(f"index out of range for {len(self)} items")
        shard_of = np.searchsorted(self.starts, unique, side="right") - 1
        bounds = np.flatnonzero(np.diff(shard_of)) + 1
        for group in np.split(np.arange(len(unique)), bounds):
            if not len(group):
                continue
            s = int(shard_of[group[0]])
            shard = self.shard(s)
            size = os.fstat(shard.fd).st_size  # shrunk under the run: an error, not SIGBUS
            if size < shard.need:
                raise DataError(f"{shard.path}: is {shard.need - size:,} bytes shorter than when "
                                "the run opened it (truncated or replaced)")
            out[group] = shard.array[unique[group] - self.starts[s]]
        return torch.from_numpy(out[inverse] if len(unique) != len(indices) or
                                not np.array_equal(unique, indices) else out)

    def labels(self) -> np.ndarray | None:
        rec = self.record.labels
        if rec is None:
            return None
        try:
            array = np.load(self.root / rec.file, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{self.root / rec.file}: is missing from the packed data set") from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.root / rec.file}: is not a readable label file ({exc})") from None
        if array.shape != (rec.count,) or array.dtype.kind not in "iu":
            raise DataError(f"{self.root / rec.file}: holds {array.dtype} {list(array.shape)}, "
                            f"not the {rec.count} labels the manifest says")
        return array.astype(np.int64)

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
