"""Which difftk ``unet`` layouts diffusers' ``UNet2DModel`` can express, and its config.

Both follow Ho et al. 2020's U-Net (appendix B): GroupNorm-SiLU-conv residual blocks with
the noise embedding added (or ADM's scale-shift), attention blocks at chosen resolutions,
strided-conv downsampling, nearest + conv upsampling, a middle of ResBlock-attention-
ResBlock. ``UNet2DModel`` fixes a few things difftk leaves free; ``diffusers_config``
names the first one a layout breaks, in one sentence.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from difftk.interop.errors import InteropError
from difftk.nn.architecture import DataSpec

# difftk's noise embedding counts t = 1..T, diffusers' k = 0..T-1 (timestep_shift.py).
TIMESTEP_SHIFT = 1.0


def level_resolutions(cfg, spec: DataSpec) -> list[int]:
    """The image width at each level of the U-Net (difftk's attention_resolutions unit)."""
    return [spec.shape[-1] // 2 ** level for level in range(len(cfg.channel_mult))]


def _attention_widths(cfg, spec: DataSpec) -> list[int]:
    widths = [cfg.channels * m for m, res in zip(cfg.channel_mult, level_resolutions(cfg, spec),
                                                   strict=True) if res in cfg.attention_resolutions]
    if cfg.mid_attention:
        widths.append(cfg.channels * cfg.channel_mult[-1])
    return widths


def _norm_groups(net: nn.Module) -> set[int]:
    return {m.num_groups for m in net.modules() if isinstance(m, nn.GroupNorm)}


def not_expressible(cfg, spec: DataSpec, net: nn.Module) -> str | None:
    """Why UNet2DModel cannot hold this layout (one sentence), or None when it can."""
    if len(spec.shape) != 3:
        return "UNet2DModel takes images, and this model takes vectors"
    if cfg.embedding != "sinusoidal":
        return (f'UNet2DModel has no "{cfg.embedding}" noise embedding that reads difftk\'s '
                f"time input (only the sinusoidal one maps)")
    if not cfg.resample_with_conv:
        return "UNet2DModel always resamples with convolutions (resample_with_conv = false " \
               "cannot be expressed)"
    if cfg.resblock_updown:
        return "UNet2DModel's plain and attention blocks cannot resample inside residual " \
               "blocks (resblock_updown = true cannot be expressed)"
    groups = _norm_groups(net)
    if len(groups) != 1:
        return (f"UNet2DModel uses one GroupNorm group count, and these widths need "
                f"{sorted(groups)} (use widths divisible by 32)")
    head_dims = {w // cfg.heads(w) for w in _attention_widths(cfg, spec)}
    head_counts = {cfg.heads(w) for w in _attention_widths(cfg, spec)}
    if len(head_dims) > 1 and head_counts != {1}:
        return (f"UNet2DModel uses one attention head width, and this layout has "
                f"{sorted(head_dims)} (set num_head_channels, or num_heads = 1)")
    return None


def diffusers_config(cfg, spec: DataSpec, net: nn.Module) -> dict[str, Any]:
    """The ``UNet2DModel`` config of a difftk ``unet`` (``cfg``) built for ``spec``."""
    reason = not_expressible(cfg, spec, net)
    if reason:
        raise InteropError(f"this unet layout cannot be exported to diffusers: {reason}")
    resolutions = level_resolutions(cfg, spec)
    attends = [res in cfg.attention_resolutions for res in resolutions]
    widths = _attention_widths(cfg, spec)
    heads = {cfg.heads(w) for w in widths}
    (groups,) = _norm_groups(net)
    height, width = spec.shape[1:]
    return {
        "_class_name": "UNet2DModel",
        "sample_size": height if height == width else [height, width],
        "in_channels": spec.shape[0],
        "out_channels": spec.out_channels,
        "center_input_sample": False,
        "time_embedding_type": "positional",
        "flip_sin_to_cos": True,  # [cos, sin], difftk's SinusoidalEmbedding order
        "freq_shift": 0,  # difftk's frequencies exp(-ln(1e4) i / half)
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in attends],
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)],
        "block_out_channels": [cfg.channels * m for m in cfg.channel_mult],
        "layers_per_block": cfg.num_res_blocks,
        "mid_block_scale_factor": 1,
        "downsample_padding": 1,
        "downsample_type": "conv",
        "upsample_type": "conv",
        "dropout": cfg.dropout,
        "act_fn": "silu",
        # None: one head per block (head width = block width), difftk's num_heads = 1.
        "attention_head_dim": None if heads <= {1} else widths[0] // cfg.heads(widths[0]),
        "norm_num_groups": groups,
        "attn_norm_num_groups": groups,
        "norm_eps": 1e-5,
        "resnet_time_scale_shift": "scale_shift" if cfg.scale_shift else "default",
        "add_attention": cfg.mid_attention,
        "class_embed_type": None,
        # difftk's label table has one more row, the null label used without a class.
        "num_class_embeds": spec.num_classes + 1 if spec.num_classes else None,
    }
