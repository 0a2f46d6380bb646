"""``train.init_from``: start a run from another run's weights, or an exported folder's.

PATH may be a difftk checkpoint (a run directory, checkpoints/latest or a step directory:
its EMA weights, the model a run samples from), a single safetensors file of a
denoiser's weights (what ``difftk ema`` writes), or a diffusers UNet2DModel folder
(config.json + diffusion_pytorch_model.safetensors, as ``difftk export`` writes). diffusers
weights load into ``diffusers_unet2d`` as they are and into a ``unet`` of the same layout
through the export's own mapping (difftk.interop.unet_keys). Only the weights are taken:
the optimizer, EMA and step start fresh; EMA starts from the loaded weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from difftk.errors import CheckpointError, DifftkError
from difftk.interop.diffusers_folder import is_diffusers_folder, read_weights

SOURCE_HELP = ("a run or checkpoint directory, a .safetensors file of a denoiser's weights, or "
               "a diffusers UNet2DModel folder")


def _net_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A denoiser's state dict (keys net.*) as the network's own."""
    return {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}


def source_weights(path: Path) -> tuple[str, dict[str, torch.Tensor]]:
    """("difftk" | "diffusers", the network weights) read from PATH."""
    from difftk.run.checkpoint import load_checkpoint, nonfinite_tensors

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"train.init_from: {path} does not exist ({SOURCE_HELP})")
    if path.is_file():
        from difftk.run.weights_file import refuse_oversized_file

        refuse_oversized_file(path)
        try:
            weights = _net_weights(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"train.init_from: {path} is not a safetensors file "
                                  f"({exc})") from None
        bad = nonfinite_tensors(weights)
        if bad:
            raise CheckpointError(f"train.init_from: {path}: {len(bad)} of {len(weights)} "
                                  f"tensors hold NaN or inf (e.g. {bad[0]})")
        return "difftk", weights
    if is_diffusers_folder(path):
        return "diffusers", read_weights(path)
    try:
        ck = load_checkpoint(path)
    except CheckpointError:
        raise CheckpointError(f"train.init_from: {path} holds no weights ({SOURCE_HELP})") from None
    bad = nonfinite_tensors(ck.tensors["ema"])
    if bad:
        raise CheckpointError(f"train.init_from: {ck.path}: {len(bad)} EMA tensors hold NaN "
                              f"or inf (e.g. {bad[0]})")
    return "difftk", _net_weights(ck.tensors["ema"])


def _convert(kind: str, state: dict, model_part, spec) -> dict[str, torch.Tensor]:
    """The source weights under the target network's names."""
    if kind == "diffusers" and model_part.name == "diffusers_unet2d":
        return {f"unet.{k}": v for k, v in state.items()}
    if kind == "diffusers" and model_part.name == "unet":
        from difftk.interop.unet_keys import from_diffusers

        return from_diffusers(state, model_part, spec)
    if kind == "diffusers":
        raise CheckpointError(f'train.init_from: diffusers weights load into the "unet" or '
                              f'"diffusers_unet2d" architecture, not "{model_part.name}"')
    return state


def _mismatch(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if not (missing or extra or shapes):
        return None
    said = []
    if missing:
        said.append(f"{len(missing)} tensors of this model are not in it (e.g. {missing[0]})")
    if extra:
        said.append(f"{len(extra)} of its tensors are not in this model (e.g. {extra[0]})")
    if shapes:
        k = shapes[0]
        said.append(f"{len(shapes)} differ in shape (e.g. {k}: {list(state[k].shape)} there, "
                    f"{list(own[k].shape)} here)")
    return "; ".join(said)


def load_initial_weights(assembly) -> None:
    """Load ``train.init_from`` into the assembled denoiser's network (no-op when unset)."""
    path = assembly.recipe.train.init_from
    if not path:
        return
    kind, state = source_weights(Path(path))
    model_part = assembly.recipe.parts["model"]
    try:
        state = _convert(kind, state, model_part, assembly.spec)
    except DifftkError as exc:
        raise CheckpointError(f"train.init_from: {path} does not fit this model: {exc}") from None
    net = assembly.denoiser.net
    problem = _mismatch(net, state)
    if problem:
        raise CheckpointError(f"train.init_from: {path} does not fit this recipe's model: {problem}")
    net.load_state_dict(state)
