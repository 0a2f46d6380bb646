"""diffusers' ``UNet2DModel`` as a difftk architecture (usable where diffusers is installed).

The network is built from a config dict in the recipe (``UNet2DModel``'s keyword
arguments), from a local diffusers folder's config.json, or, with neither, from a small
two-level layout; the data decide in_channels, out_channels (2C with a learned variance),
sample_size and the class table (``num_class_embeds`` = classes + 1, the last row the null
label, as difftk's own networks do). Weights come from ``train.init_from``.

difftk's contract (difftk.nn.architecture): the network receives x as the target gives it
(x_t, or EDM's c_in x_t) and the target's time input: t = 1..T on a t-space schedule,
EDM's c_noise = ln(sigma) / 4 on a sigma-space one. diffusers' network reads its timestep
k = 0..T-1 (a scheduler's ``timesteps``), so the wrapper feeds k = time * time_scale +
time_shift; the defaults (1, -1) turn difftk's t into diffusers' k, so a folder exported by
``difftk export`` or published for diffusers' DDPM schedulers reads the levels it was
trained on. With EDM's c_noise set time_shift = 0 (a folder trained on diffusers' DDPM
timesteps then starts from levels it was not trained on).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from difftk.hookspecs import hookimpl
from difftk.interop.optional import DIFFUSERS
from difftk.nn.architecture import Architecture, ArchitectureError, DataSpec
from difftk.optional_package import OptionalPackage

# Two levels (8x8 -> 4x4 for the digits), attention at the lower one and in the middle.
SMALL_LAYOUT: dict[str, Any] = {
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": 16,
    "norm_num_groups": 8,
}
FROM_DATA = ("in_channels", "out_channels")


class DiffusersUNet2DNet(nn.Module):
    """UNet2DModel called the way difftk calls a network: net(x, time, labels)."""

    def __init__(self, unet: nn.Module, time_scale: float, time_shift: float, null_label: int):
        super().__init__()
        self.unet = unet
        self.time_scale, self.time_shift, self.null_label = time_scale, time_shift, null_label

    def forward(self, x: Tensor, time: Tensor, labels: Tensor | None = None) -> Tensor:
        timestep = time.float() * self.time_scale + self.time_shift
        if self.null_label and labels is None:
            labels = torch.full((x.shape[0],), self.null_label, device=x.device, dtype=torch.long)
        return self.unet(x, timestep, class_labels=labels if self.null_label else None).sample


class DiffusersUNet2D(Architecture):
    """diffusers' UNet2DModel (a config dict or a local folder), trained by difftk's recipes."""

    name = "diffusers_unet2d"
    requires: ClassVar[tuple[OptionalPackage, ...]] = (
        DIFFUSERS,)
    config: dict[str, Any] = Field(
        default_factory=dict, description="UNet2DModel keyword arguments (block_out_channels, "
        "down_block_types, ...); empty with no folder: a small two-level layout")
    folder: str = Field("", description="a local diffusers model folder whose config.json "
                        "gives the layout (config's keys override it); weights: train.init_from")
    time_scale: float = Field(1.0, gt=0, description="diffusers timestep = time * time_scale "
                              "+ time_shift (time: difftk's t, or EDM's c_noise)")
    time_shift: float = Field(-1.0, description="added after time_scale; -1 maps difftk's "
                              "t = 1..T to diffusers' 0..T-1")

    def layout(self, spec: DataSpec) -> dict[str, Any]:
        """The UNet2DModel config for ``spec``: folder, then config, then the data's sizes."""
        from difftk.interop.diffusers_folder import read_config

        base = {}
        if self.folder:
            if not (Path(self.folder) / "config.json").is_file():
                raise ArchitectureError(f"{self.folder}: no diffusers config.json there")
            base = {k: v for k, v in read_config(Path(self.folder)).items() if not k.startswith("_")}
        elif not self.config:
            base = dict(SMALL_LAYOUT)
        layout = {**base, **self.config}
        for key, ours in zip(FROM_DATA, (spec.shape[0], spec.out_channels), strict=True):
            if key in layout and layout[key] != ours:
                raise ArchitectureError(f"diffusers_unet2d: {key} = {layout[key]} does not fit "
                                        f"the data, which needs {ours}")
            layout[key] = ours
        height, width = spec.shape[1:]
        layout["sample_size"] = height if height == width else [height, width]
        layout["num_class_embeds"] = spec.num_classes + 1 if spec.num_classes else None
        return layout

    def build(self, spec: DataSpec) -> nn.Module:
        if len(spec.shape) != 3:
            raise ArchitectureError(f"diffusers_unet2d takes images (C, H, W), not shape {spec.shape}")
        from difftk.interop.errors import InteropError
        from difftk.interop.optional import import_diffusers

        try:
            unet_class = import_diffusers().UNet2DModel
        except InteropError as exc:
            raise ArchitectureError(str(exc)) from None
        layout = self.layout(spec)
        accepted = set(inspect.signature(unet_class.__init__).parameters) - {"self"}
        unknown = sorted(set(self.config) - accepted)
        if unknown:
            raise ArchitectureError(f"diffusers_unet2d: UNet2DModel has no parameter "
                                    f'"{unknown[0]}"')
        try:
            unet = unet_class(**{k: v for k, v in layout.items() if k in accepted})
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise ArchitectureError(f"diffusers_unet2d: UNet2DModel refuses this config "
                                    f"({str(exc).splitlines()[0]})") from None
        return DiffusersUNet2DNet(unet, self.time_scale, self.time_shift, spec.num_classes)


@hookimpl
def register_architectures(register):
    register(DiffusersUNet2D)  # listed as needing difftk[interop] where diffusers is missing
