"""difftk ``unet`` weights <-> diffusers ``UNet2DModel`` weights, tensor by tensor.

The two networks run the same operations in the same order (unet_layout.py); only the
names differ, plus two changes of form: difftk's attention computes q, k, v with one 1x1
convolution of 3C channels where diffusers has three Linear layers (and a Linear output
projection for difftk's 1x1 convolution), and the first noise-embedding layer carries the
timestep shift (timestep_shift.py). Every tensor is used exactly once each way.
"""

from __future__ import annotations

from torch import Tensor

from difftk.interop.errors import InteropError
from difftk.interop.timestep_shift import shift_first_layer
from difftk.interop.unet_layout import TIMESTEP_SHIFT, level_resolutions
from difftk.nn.architecture import DataSpec
from difftk.nn.embedding import SinusoidalEmbedding

RESBLOCK = (("norm1", "norm1"), ("conv1", "conv1"), ("emb", "time_emb_proj"),
            ("norm2", "norm2"), ("conv2", "conv2"), ("skip", "conv_shortcut"))


def module_pairs(cfg, spec: DataSpec) -> list[tuple[str, str, str]]:
    """(difftk module, diffusers module, kind) for every weight-carrying module, following
    UNetModel's construction order; kind is "plain", "attention" or "time"."""
    pairs = [("noise_embed.mlp.0", "time_embedding.linear_1", "time"),
             ("noise_embed.mlp.2", "time_embedding.linear_2", "plain"),
             ("inp", "conv_in", "plain")]
    if spec.num_classes:
        pairs.append(("label_embed.table", "class_embedding", "plain"))

    def resblock(ours: str, theirs: str) -> None:
        pairs.extend((f"{ours}.{a}", f"{theirs}.{b}", "plain") for a, b in RESBLOCK)

    levels = len(cfg.channel_mult)
    attends = [r in cfg.attention_resolutions for r in level_resolutions(cfg, spec)]
    stage = 0
    for level in range(levels):
        for j in range(cfg.num_res_blocks):
            resblock(f"down.{stage}.layers.0", f"down_blocks.{level}.resnets.{j}")
            if attends[level]:
                pairs.append((f"down.{stage}.layers.1", f"down_blocks.{level}.attentions.{j}",
                              "attention"))
            stage += 1
        if level < levels - 1:
            pairs.append((f"down.{stage}.layers.0.conv", f"down_blocks.{level}.downsamplers.0.conv",
                          "plain"))
            stage += 1
    resblock("mid.layers.0", "mid_block.resnets.0")
    if cfg.mid_attention:
        pairs.append(("mid.layers.1", "mid_block.attentions.0", "attention"))
    resblock(f"mid.layers.{2 if cfg.mid_attention else 1}", "mid_block.resnets.1")
    stage = 0
    for block, level in enumerate(reversed(range(levels))):
        for i in range(cfg.num_res_blocks + 1):
            resblock(f"up.{stage}.layers.0", f"up_blocks.{block}.resnets.{i}")
            layer = 1
            if attends[level]:
                pairs.append((f"up.{stage}.layers.1", f"up_blocks.{block}.attentions.{i}",
                              "attention"))
                layer = 2
            if level > 0 and i == cfg.num_res_blocks:
                pairs.append((f"up.{stage}.layers.{layer}.conv",
                              f"up_blocks.{block}.upsamplers.0.conv", "plain"))
            stage += 1
    pairs += [("out_norm", "conv_norm_out", "plain"), ("out", "conv_out", "plain")]
    return pairs


def _take(state: dict[str, Tensor], prefix: str, used: set[str]) -> dict[str, Tensor]:
    """The tensors under ``prefix.`` keyed by the rest of their name."""
    out = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    used.update(f"{prefix}.{k}" for k in out)
    return out


def _check_all_used(state: dict[str, Tensor], used: set[str], what: str) -> None:
    left = sorted(set(state) - used)
    if left:
        raise InteropError(f"{len(left)} {what} tensors have no counterpart (e.g. {left[0]}); "
                           f"the weights do not come from this layout")


def to_diffusers(state: dict[str, Tensor], cfg, spec: DataSpec) -> dict[str, Tensor]:
    """difftk ``unet`` network weights (keys as in UNetModel) -> UNet2DModel weights."""
    freqs = SinusoidalEmbedding(cfg.channels).freqs
    out, used = {}, set()
    for ours, theirs, kind in module_pairs(cfg, spec):
        part = _take(state, ours, used)
        if kind == "attention":
            c = part["proj.weight"].shape[0]
            w, b = part["qkv.weight"].reshape(3 * c, c), part["qkv.bias"]
            for i, name in enumerate(("to_q", "to_k", "to_v")):
                out[f"{theirs}.{name}.weight"] = w[i * c:(i + 1) * c].clone()
                out[f"{theirs}.{name}.bias"] = b[i * c:(i + 1) * c].clone()
            out[f"{theirs}.to_out.0.weight"] = part["proj.weight"].reshape(c, c).clone()
            out[f"{theirs}.to_out.0.bias"] = part["proj.bias"].clone()
            out[f"{theirs}.group_norm.weight"] = part["norm.weight"].clone()
            out[f"{theirs}.group_norm.bias"] = part["norm.bias"].clone()
            continue
        for key, value in part.items():
            if kind == "time" and key == "weight":
                value = shift_first_layer(value, freqs, TIMESTEP_SHIFT)
            out[f"{theirs}.{key}"] = value.clone()
    _check_all_used(state, used, "difftk")
    return out


def from_diffusers(state: dict[str, Tensor], cfg, spec: DataSpec) -> dict[str, Tensor]:
    """UNet2DModel weights -> difftk ``unet`` network weights (the inverse of to_diffusers)."""
    import torch

    freqs = SinusoidalEmbedding(cfg.channels).freqs
    out, used = {}, set()
    for ours, theirs, kind in module_pairs(cfg, spec):
        part = _take(state, theirs, used)
        if kind == "attention":
            try:
                c = part["to_q.weight"].shape[0]
                out[f"{ours}.qkv.weight"] = torch.cat(
                    [part[f"{n}.weight"] for n in ("to_q", "to_k", "to_v")]).reshape(3 * c, c, 1, 1)
                out[f"{ours}.qkv.bias"] = torch.cat([part[f"{n}.bias"] for n in ("to_q", "to_k", "to_v")])
                out[f"{ours}.proj.weight"] = part["to_out.0.weight"].reshape(c, c, 1, 1).clone()
                out[f"{ours}.proj.bias"] = part["to_out.0.bias"].clone()
                out[f"{ours}.norm.weight"] = part["group_norm.weight"].clone()
                out[f"{ours}.norm.bias"] = part["group_norm.bias"].clone()
            except KeyError as exc:
                raise InteropError(f"{theirs}: attention weight {exc} is missing; the weights do "
                                   f"not come from this layout") from None
            continue
        for key, value in part.items():
            if kind == "time" and key == "weight":
                value = shift_first_layer(value, freqs, -TIMESTEP_SHIFT)
            out[f"{ours}.{key}"] = value.clone()
    _check_all_used(state, used, "diffusers")
    return out
