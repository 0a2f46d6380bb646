"""``difftk export --format diffusers``: a run as a diffusers UNet2DModel folder.

The folder holds config.json, diffusion_pytorch_model.safetensors (the EMA weights unless
asked otherwise: what users of a released model expect) and scheduler_config.json, and
loads with ``UNet2DModel.from_pretrained(DIR)`` / ``DDPMScheduler.from_pretrained(DIR)``.
The network reads diffusers' timestep k = t - 1 (timestep_shift.py); every check runs
before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from difftk.interop.diffusers_folder import diffusers_version, write_folder
from difftk.interop.errors import InteropError
from difftk.interop.scheduler_config import scheduler_config
from difftk.interop.unet_keys import to_diffusers
from difftk.interop.unet_layout import diffusers_config

FORMATS = ("diffusers",)


@dataclass(frozen=True)
class Exported:
    folder: Path
    step: int
    weights: str  # "ema" or "model"
    prediction_type: str
    parameters: int


def _network_and_config(model_part, net, spec) -> tuple[dict, dict]:
    """(UNet2DModel config, its weights) of a built network of a supported architecture."""
    if model_part.name == "unet":
        config = diffusers_config(model_part, spec, net)
        return config, to_diffusers(net.state_dict(), model_part, spec)
    if model_part.name == "diffusers_unet2d":
        if (model_part.time_scale, model_part.time_shift) != (1.0, -1.0):
            raise InteropError("this diffusers_unet2d reads a rescaled time input "
                               "(time_scale, time_shift), which diffusers' schedulers do not send")
        return {"_class_name": "UNet2DModel", **dict(net.unet.config)}, net.unet.state_dict()
    raise InteropError(f'diffusers\' UNet2DModel holds difftk\'s "unet" architecture, and this '
                       f'run uses "{model_part.name}"')


def export_diffusers(checkpoint: Path, out: Path, use_ema: bool = True) -> Exported:
    from difftk.run.assemble import restore

    restored = restore(checkpoint, torch.device("cpu"), use_ema=use_ema)
    parts = restored.recipe.parts
    if not restored.codec.identity:
        # a UNet2DModel + scheduler folder draws what the network denoises: here latents,
        # which diffusers' pipelines would show as images
        raise InteropError(f'{checkpoint}: the run diffuses in the "{parts["latents"].name}" '
                           f"latents, and a diffusers UNet2DModel folder would draw latents, not "
                           f"images; export runs trained on pixels")
    net = restored.denoiser.net
    scheduler = scheduler_config(parts, diffusers_version())
    config, weights = _network_and_config(parts["model"], net, restored.spec)
    config = {k: v for k, v in config.items() if k != "_diffusers_version"}
    if parts["model"].name == "diffusers_unet2d":
        config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()
                  if not k.startswith("_") or k == "_class_name"}
    which = "ema" if use_ema else "model"
    write_folder(out, config, weights, scheduler,
                 {"difftk_checkpoint": str(Path(checkpoint).resolve()),
                  "difftk_step": str(restored.step), "difftk_weights": which})
    return Exported(Path(out), restored.step, which, scheduler["prediction_type"],
                    sum(v.numel() for v in weights.values()))
