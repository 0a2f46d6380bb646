"""Writing a packed data set (data/packed.py): any source's items into checksummed shards.

Shards are written in parallel by worker processes, each to a temporary name, fsynced and
renamed; a finished shard leaves a small record in ``.pack/`` (its checksum, labels,
statistics and the items it skipped). Packing again into the same folder keeps the shards
whose records exist and writes the rest, so a killed pack resumes; the manifest is written
last, so a folder without one is never mistaken for a finished set.

Statistics are exact and cheap: for uint8 values a per-channel histogram of 256 counts per
shard (merged by adding), from which mean and sum of squared deviations follow in float64;
for other dtypes float64 moments merged with Chan et al.'s update (data/stats.py).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Literal

import numpy as np

from difftk.data.items import Items
from difftk.data.packed import (
    Manifest,
    Moments,
    ShardRecord,
    SplitRecord,
    file_sha256,
    write_atomic,
    write_manifest,
)
from difftk.data.stats import merge_moments
from difftk.errors import DataError

OnError = Literal["stop", "skip"]
WORK = ".pack"


def shard_moments(values: np.ndarray) -> dict:
    """Per-channel (count, mean, m2) and range of stored values [n, C, ...] (or [n, D])."""
    n = values.shape[0]
    channels = values.shape[1] if values.ndim > 1 else 1
    flat = values.reshape(n, channels, -1)
    if values.dtype == np.uint8:
        levels = np.arange(256, dtype=np.float64)
        hist = np.stack([np.bincount(flat[:, c].ravel(), minlength=256) for c in range(channels)])
        count = int(hist[0].sum())
        mean = (hist * levels).sum(1) / max(count, 1)
        m2 = (hist * (levels[None] - mean[:, None]) ** 2).sum(1)
        seen = np.flatnonzero(hist.sum(0))
        lo, hi = (float(seen[0]), float(seen[-1])) if len(seen) else (0.0, 0.0)
    else:
        part = flat.transpose(1, 0, 2).reshape(channels, -1).astype(np.float64)
        count = part.shape[1]
        mean = part.mean(1)
        m2 = ((part - mean[:, None]) ** 2).sum(1)
        lo, hi = float(part.min()), float(part.max())
    return {"count": count, "mean": mean.tolist(), "m2": m2.tolist(), "minimum": lo,
            "maximum": hi}


def combine_moments(parts: list[dict]) -> Moments | None:
    parts = [p for p in parts if p["count"]]
    if not parts:
        return None
    n, mean, m2 = parts[0]["count"], np.array(parts[0]["mean"]), np.array(parts[0]["m2"])
    for p in parts[1:]:
        n, mean, m2 = merge_moments(n, mean, m2, p["count"], np.array(p["mean"]), np.array(p["m2"]))
    return Moments(count=n, mean=mean.tolist(), m2=m2.tolist(),
                   minimum=min(p["minimum"] for p in parts),
                   maximum=max(p["maximum"] for p in parts))


# The source of the pack that runs in this process; set before the workers fork, so a large
# in-memory source is shared with them rather than pickled once per shard.
_SOURCE: tuple[Items, np.ndarray | None] | None = None


def _read_checked(items: Items, indices: np.ndarray, on_error: OnError
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(values, kept indices, skip reasons): a batch read whole, item by item if one fails."""
    try:
        return items.read(indices).numpy(), indices, []
    except DataError as exc:
        if on_error == "stop":
            raise DataError(f"{exc}; pack with --on-error skip to leave such items out "
                            "(they are counted in the manifest)") from None
    kept, values, skipped = [], [], []
    for i in indices:
        try:
            values.append(items.read(np.array([i])).numpy())
            kept.append(i)
        except DataError as exc:
            skipped.append(f"item {int(i)}: {exc}")
    shape = (0, *items.item_shape)
    dtype = np.dtype(str(items.stored_dtype).removeprefix("torch."))
    return (np.concatenate(values) if values else np.empty(shape, dtype)), np.array(
        kept, dtype=np.int64), skipped


def _write_shard(root: str, split: str, s: int, start: int, stop: int, on_error: OnError,
                 read_batch: int = 256) -> dict:
    items, labels = _SOURCE
    root_path = Path(root)
    parts, kept_all, skipped = [], [], []
    for lo in range(start, stop, read_batch):
        index = np.arange(lo, min(lo + read_batch, stop), dtype=np.int64)
        values, kept, why = _read_checked(items, index, on_error)
        parts.append(values)
        kept_all.append(kept)
        skipped += why
    values = np.concatenate(parts)
    kept = np.concatenate(kept_all)
    name = f"{split}-{s:05d}.npy"
    tmp = root_path / WORK / f"{name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(values), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root_path / name)
    record = {"file": name, "count": int(len(values)), "sha256": file_sha256(root_path / name),
              "labels": labels[kept].tolist() if labels is not None else None,
              "skipped": skipped, "moments": shard_moments(values)}
    write_atomic(root_path / WORK / f"{name}.json", json.dumps(record).encode())
    return record


def _done(root: Path, name: str) -> dict | None:
    """The record of a shard a previous pack finished, if its file is still there whole."""
    path = root / WORK / f"{name}.json"
    try:
        record = json.loads(path.read_text())
        if (root / name).stat().st_size > 0:
            return record
    except (OSError, ValueError):
        pass
    return None


def pack_split(items: Items, labels: np.ndarray | None, root: Path, split: str,
               shard_items: int = 8192, workers: int = 2, on_error: OnError = "stop",
               progress: Callable[[int], None] | None = None, part: int = 0, parts: int = 1
               ) -> SplitRecord | None:
    """Write one split's items into shards of ``shard_items``; resumes finished shards.

    With ``parts`` > 1 (processes sharing the work, e.g. under torchrun) this process writes
    the shards s with s % parts == part and returns None; once every part is done, one
    process calls ``collect_split``."""
    global _SOURCE
    root.mkdir(parents=True, exist_ok=True)
    (root / WORK).mkdir(exist_ok=True)
    n = len(items)
    if labels is not None and len(labels) != n:
        raise DataError(f"{items.source}: has {len(labels)} labels for {n} items")
    todo = []
    for s, lo, hi in shard_bounds(n, shard_items):
        if s % parts != part:
            continue
        if _done(root, f"{split}-{s:05d}.npy") is not None:
            if progress:
                progress(hi - lo)
        else:
            todo.append((s, lo, hi))
    _SOURCE = (items, labels)
    try:
        if workers <= 1 or len(todo) <= 1:
            for s, lo, hi in todo:
                _write_shard(str(root), split, s, lo, hi, on_error)
                if progress:
                    progress(hi - lo)
        else:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = {pool.submit(_write_shard, str(root), split, s, lo, hi, on_error):
                           hi - lo for s, lo, hi in todo}
                for future in as_completed(futures):
                    future.result()
                    if progress:
                        progress(futures[future])
    finally:
        _SOURCE = None
    if parts > 1:
        return None
    return collect_split(root, split, n, shard_items, labels is not None)


def shard_bounds(n: int, shard_items: int) -> list[tuple[int, int, int]]:
    """(shard index, first item, end) of each shard of n items."""
    return [(s, lo, min(lo + shard_items, n)) for s, lo in enumerate(range(0, n, shard_items))]


def collect_split(root: Path, split: str, n: int, shard_items: int, labelled: bool
                  ) -> SplitRecord:
    """The split's record from its finished shards' records (and its label file)."""
    ordered = []
    for s, _, _ in shard_bounds(n, shard_items):
        record = _done(root, f"{split}-{s:05d}.npy")
        if record is None:
            raise DataError(f"{root}: shard {s} of split {split} was not written")
        ordered.append(record)
    label_record = None
    if labelled:
        kept = np.array([y for r in ordered for y in r["labels"]], dtype=np.int64)
        name = f"{split}-labels.npy"
        tmp = root / WORK / f"{name}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, kept, allow_pickle=False)
        os.replace(tmp, root / name)
        label_record = ShardRecord(file=name, count=len(kept), sha256=file_sha256(root / name))
    return SplitRecord(
        count=sum(r["count"] for r in ordered),
        shards=[ShardRecord(file=r["file"], count=r["count"], sha256=r["sha256"])
                for r in ordered],
        labels=label_record, moments=combine_moments([r["moments"] for r in ordered]),
        skipped=[why for r in ordered for why in r["skipped"]])


def finish(root: Path, manifest: Manifest) -> None:
    """The manifest, written last; the shard records are no longer needed."""
    write_manifest(root, manifest)
    shutil.rmtree(root / WORK, ignore_errors=True)
