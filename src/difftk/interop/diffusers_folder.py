"""A diffusers model folder on disk: config.json + diffusion_pytorch_model.safetensors.

Written and read without importing diffusers (JSON and safetensors only), so exporting
needs no optional package and a folder can seed ``train.init_from`` anywhere.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from difftk.interop.errors import InteropError

CONFIG = "config.json"
WEIGHTS = "diffusion_pytorch_model.safetensors"
SCHEDULER = "scheduler_config.json"


def diffusers_version() -> str:
    """The installed diffusers' version (what its configs record), or the oldest supported."""
    try:
        return metadata.version("diffusers")
    except metadata.PackageNotFoundError:
        return "0.30.0"


def is_diffusers_folder(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file() and (Path(path) / WEIGHTS).is_file()


def write_folder(out: Path, config: dict[str, Any], weights: dict[str, torch.Tensor],
                 scheduler: dict[str, Any] | None, metadata_: dict[str, str]) -> Path:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InteropError(f"{out} already exists and is not empty; choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    config = {**config, "_diffusers_version": diffusers_version()}
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(out / WEIGHTS),
              metadata={"format": "pt", **metadata_})
    if scheduler is not None:
        (out / SCHEDULER).write_text(json.dumps(scheduler, indent=2) + "\n")
    return out


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InteropError(f"{path}: not a readable diffusers config ({exc})") from None


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    path = Path(folder) / WEIGHTS
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InteropError(f"{path}: damaged or not a safetensors file ({exc})") from None
