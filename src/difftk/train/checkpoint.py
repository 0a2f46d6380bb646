"""Checkpoints: safetensors only (loading one cannot run code), written atomically.

A checkpoint is a directory ``checkpoints/<step>/`` holding model, ema and optimizer
weights, the random streams, ``state.json`` and the resolved ``recipe.toml``. It is
written to a temporary directory, each file fsynced, then renamed into place; the
``latest`` link is replaced atomically afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from difftk.errors import CheckpointError

FILES = ("model", "ema", "optimizer", "rng")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer state dict into flat tensors and JSON metadata."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_state(tensors: dict, meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in tensors.items():
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for flat, value in meta["scalars"].items():
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def write_step_dir(root: Path, step: int, groups: dict[str, dict[str, torch.Tensor]],
                   texts: dict[str, str]) -> Path:
    """Write ``root/<step>/`` atomically: one safetensors file per group plus text files,
    each fsynced in a temporary directory that is then renamed into place."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{step:08d}"
    tmp = root / f".{step:08d}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, group in groups.items():
        path = tmp / f"{name}.safetensors"
        save_file({k: v.detach().contiguous().cpu() for k, v in group.items()}, str(path))
        _fsync(path)
    for name, text in texts.items():
        (tmp / name).write_text(text)
        _fsync(tmp / name)
    _fsync(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync(root)
    return final


def save_checkpoint(root: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]],
                    state: dict[str, Any], recipe_toml: str, keep_last: int) -> Path:
    final = write_step_dir(root, step, tensors, {"state.json": json.dumps(state, indent=1),
                                                 "recipe.toml": recipe_toml})
    link_tmp = root / ".latest.tmp"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    os.symlink(final.name, link_tmp)
    os.replace(link_tmp, root / "latest")
    _fsync(root)
    steps = sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()
                   and p.name.isdigit())
    for old in steps[:-keep_last]:
        shutil.rmtree(old)
    return final


@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, dict[str, torch.Tensor]]
    state: dict[str, Any]
    recipe_toml: str

    @property
    def step(self) -> int:
        return int(self.state["step"])


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept a run directory, its checkpoints directory, ``latest``, or a step directory."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    for candidate in (path, path / "latest", path / "checkpoints" / "latest"):
        if (candidate / "state.json").is_file():
            return candidate.resolve()
    raise CheckpointError(f"{path}: holds no checkpoint (no state.json, no checkpoints/latest)")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    ckpt = resolve_checkpoint_dir(path)
    try:
        state = json.loads((ckpt / "state.json").read_text())
        recipe_toml = (ckpt / "recipe.toml").read_text()
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{ckpt}: state.json or recipe.toml is unreadable ({exc})") from None
    tensors = {}
    optional = sorted(p.stem for p in ckpt.glob("*.safetensors") if p.stem not in FILES)
    for name in (*FILES, *optional):
        file = ckpt / f"{name}.safetensors"
        if not file.is_file():
            raise CheckpointError(f"{file}: missing from the checkpoint")
        try:
            tensors[name] = load_file(str(file), device=str(map_location))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{file}: is damaged or truncated ({exc})") from None
    return Checkpoint(ckpt, tensors, state, recipe_toml)


def save_snapshot(root: Path, step: int, groups: dict[str, dict[str, torch.Tensor]],
                  meta: dict[str, Any]) -> Path:
    """Write ``root/<step>/`` with one safetensors file per group and ``snapshot.json``.

    Snapshots feed post-hoc EMA and are never pruned; like checkpoints they are written
    atomically, so a crash leaves no half snapshot.
    """
    return write_step_dir(root, step, groups, {"snapshot.json": json.dumps(meta, indent=1)})


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """One safetensors file written atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata=metadata)
    _fsync(tmp)
    os.replace(tmp, path)
    return path
