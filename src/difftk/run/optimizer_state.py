"""An optimizer's state dict as flat tensors (for safetensors) and JSON metadata, and back."""

from __future__ import annotations

import torch


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
