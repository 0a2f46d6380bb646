"""Rebuild a trained denoiser from a checkpoint directory (for sampling and evaluation)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from difftk.errors import CheckpointError
from difftk.nn.architecture import DataSpec
from difftk.recipe import Recipe, recipe_from_text
from difftk.train.assemble import assemble
from difftk.train.checkpoint import load_intact, require_finite


@dataclass
class Restored:
    recipe: Recipe
    denoiser: torch.nn.Module
    spec: DataSpec
    kind: str
    step: int


def restore(path, device: torch.device, use_ema: bool = True) -> Restored:
    group = "ema" if use_ema else "model"
    ck = load_intact(path, groups=(group,))  # no optimizer needed; damaged ones are skipped
    require_finite(ck, group)
    recipe = recipe_from_text(ck.recipe_toml, source=str(ck.path / "recipe.toml"))
    s = ck.state["spec"]
    spec = DataSpec(tuple(s["shape"]), s["out_channels"], s["num_classes"])
    asm = assemble(recipe, spec, device)
    try:
        asm.denoiser.load_state_dict(ck.tensors[group])
    except RuntimeError as exc:
        raise CheckpointError(f"{ck.path}: weights do not fit the recorded model ({exc})") from None
    asm.denoiser.eval()
    return Restored(recipe, asm.denoiser, spec, ck.state.get("kind", "image"), ck.step)
