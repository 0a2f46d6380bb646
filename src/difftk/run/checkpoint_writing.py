"""Writing checkpoints, EMA snapshots and weights files, crash-safe (run/checkpoint.py says
what a checkpoint is and how it is read).

Every write leaves the previous good state readable at every instant; nothing is
deleted first:

- a step directory is written whole into ``.<step>.tmp`` (each file and the directory
  fsynced), then renamed into place and the parent fsynced. An existing directory of the
  same step is kept when it is intact (a checkpoint is never written into); a damaged one
  is swapped with the new one in a single ``renameat2(RENAME_EXCHANGE)`` where the kernel
  offers it, else moved aside just before the rename;
- ``latest`` is replaced by renaming a new link over it, then the parent is fsynced;
- pruned directories are first renamed to ``.<step>.trash``, so a crash never leaves a
  half-deleted checkpoint under a step's name;
- weights that are not finite are never saved as a checkpoint.

The disk changes only through run/durable_files.py's steps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as encode_safetensors
from safetensors.torch import save_file

from difftk.errors import CheckpointError, TrainingDivergedError
from difftk.run import durable_files as fs
from difftk.run.checkpoint import (
    checkpoint_problem,
    describe_intact,
    digest,
    nonfinite_tensors,
    step_dirs,
)
from difftk.run.state_record import sealed


class NonFiniteWeightsError(TrainingDivergedError):
    """The weights about to be saved hold NaN or inf; they are not written as a checkpoint."""

    exit_code = 3


def _encode(groups: dict[str, dict[str, torch.Tensor]]) -> dict[str, bytes]:
    return {f"{name}.safetensors": encode_safetensors(
        {k: v.detach().contiguous().cpu() for k, v in group.items()}) for name, group in groups.items()}


def _commit_dir(root: Path, name: str, payload: dict[str, bytes]) -> Path:
    """Write ``root/name/`` holding ``payload`` so that it appears whole or not at all."""
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / name, root / f".{name}.tmp"
    if tmp.exists():
        fs.remove_tree(tmp)
    tmp.mkdir()
    for filename, data in payload.items():
        fs.write_file(tmp / filename, data)
    fs.fsync(tmp)
    if final.exists() and not final.is_symlink():
        if not fs.exchange(tmp, final):  # no atomic swap here: move the old one aside first
            fs.rename(final, root / f".{name}.old")
            fs.rename(tmp, final)
            tmp = root / f".{name}.old"
        fs.fsync(root)
        fs.remove_tree(tmp)  # now the old directory
    else:
        fs.rename(tmp, final)
    fs.fsync(root)
    return final


def write_step_dir(root: Path, step: int, groups: dict[str, dict[str, torch.Tensor]],
                   texts: dict[str, str]) -> Path:
    """Write ``root/<step>/`` atomically: one safetensors file per group plus text files,
    each fsynced in a temporary directory that is then renamed into place (an existing
    directory of that step is swapped out, never deleted first)."""
    payload = _encode(groups) | {name: text.encode() for name, text in texts.items()}
    return _commit_dir(root, f"{step:08d}", payload)


def _point_latest(root: Path, final: Path) -> None:
    link_tmp = root / ".latest.tmp"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    fs.symlink(final.name, link_tmp)
    fs.rename(link_tmp, root / "latest")
    fs.fsync(root)


def _prune(root: Path, keep_last: int, keep: Iterable[Path]) -> None:
    keep = {p.name for p in keep}
    for old in step_dirs(root)[:-keep_last]:
        if old.name not in keep:
            trash = root / f".{old.name}.trash"
            fs.rename(old, trash)
            fs.remove_tree(trash)


def _clear_leftovers(root: Path) -> None:
    """Remove what an interrupted write left: never a committed checkpoint."""
    for leftover in root.glob(".*"):
        if leftover.suffix in (".tmp", ".trash", ".old") and leftover.is_dir() \
                and not leftover.is_symlink():
            fs.remove_tree(leftover)


def save_checkpoint(root: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]],
                    state: dict[str, Any], recipe_toml: str, keep_last: int) -> Path:
    """Write ``root/<step>/``, point ``latest`` at it and prune to ``keep_last``.

    An intact checkpoint of the same step is kept as it is (a checkpoint is never
    rewritten); non-finite weights raise NonFiniteWeightsError and write nothing.
    """
    bad = {name: nonfinite_tensors(group) for name, group in tensors.items() if name != "rng"}
    bad = {name: keys for name, keys in bad.items() if keys}
    if bad:
        what = ", ".join(f"{name}: {len(keys)} of {len(tensors[name])} tensors"
                         for name, keys in bad.items())
        raise NonFiniteWeightsError(
            f"the weights at step {step} hold NaN or inf ({what}); they were not saved as a "
            f"checkpoint, and {describe_intact(root)}")
    final = root / f"{step:08d}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _clear_leftovers(root)
        if not (final.is_dir() and checkpoint_problem(final) is None):
            payload = _encode(tensors) | {"recipe.toml": recipe_toml.encode()}
            state = state | {"files": {name: digest(data) for name, data in payload.items()}}
            payload["state.json"] = json.dumps(sealed(state), indent=1).encode()
            _commit_dir(root, final.name, payload)
        _point_latest(root, final)
        _prune(root, keep_last, keep=[final])
    except OSError as exc:
        where = exc.filename or root
        raise CheckpointError(
            f"could not write checkpoint {final.name} ({where}: {exc.strerror or exc}); "
            f"{describe_intact(root)}") from None
    return final


def save_snapshot(root: Path, step: int, groups: dict[str, dict[str, torch.Tensor]],
                  meta: dict[str, Any]) -> Path:
    """Write ``root/<step>/`` with one safetensors file per group and ``snapshot.json``.

    Snapshots feed post-hoc EMA and are never pruned; like checkpoints they are written
    atomically, so a crash leaves no half snapshot.
    """
    payload = _encode(groups)
    meta = sealed(meta | {"files": {name: digest(data) for name, data in payload.items()}})
    payload["snapshot.json"] = json.dumps(meta, indent=1).encode()
    return _commit_dir(root, f"{step:08d}", payload)


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """One safetensors file written atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata=metadata)
    fs.fsync(tmp)
    os.replace(tmp, path)
    return path
