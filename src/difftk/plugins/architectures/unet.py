"""The DDPM / ADM U-Net family (Ho et al. 2020, appendix B; Dhariwal & Nichol 2021, §3).

One layout expresses both: residual blocks GroupNorm-SiLU-conv with the noise embedding
added (DDPM) or applied as a scale-shift of the second GroupNorm (ADM's AdaGN), dropout,
a 1x1 skip when the width changes; self-attention at chosen resolutions and in the middle;
channel multipliers per level; resampling by strided / nearest-neighbour convolutions (DDPM)
or inside residual blocks (ADM's BigGAN up/down); an optional class embedding added to the
noise embedding, and EDM's augmentation labels mapped into it where [augment] is on.
GroupNorm, attention scores, the noise embedding and the output head run in fp32 under
autocast (seed 001 §12.4).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from difftk.hookspecs import hookimpl
from difftk.nn.architecture import Architecture, ArchitectureError, DataSpec
from difftk.nn.attention import attention
from difftk.nn.auto_speed import Auto, chosen
from difftk.nn.checkpointing import run_block
from difftk.nn.conditioning import LabelEmbedding, NoiseEmbedding
from difftk.nn.embedding import make_embedding
from difftk.nn.fp32 import fp32_region, group_norm

Resample = Literal["up", "down"] | None


def _resample(x: Tensor, how: Resample) -> Tensor:
    if how == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    if how == "down":
        return F.avg_pool2d(x, 2)
    return x


class ResBlock(nn.Module):
    """x + conv(dropout(SiLU(GN(conv(SiLU(GN(x))) [+ emb])))), the last conv zero-initialised.

    ``scale_shift``: GN(h) (1 + scale) + shift with (scale, shift) from the embedding (ADM);
    otherwise the embedding is added before the second GN (DDPM). ``resample`` moves the
    block between resolutions (ADM's resblock_updown) by nearest upsampling / average pooling.
    """

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float, scale_shift: bool,
                 resample: Resample = None):
        super().__init__()
        self.scale_shift, self.resample = scale_shift, resample
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout * (2 if scale_shift else 1))
        self.norm2 = group_norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = F.silu(self.norm1(x))
        h, x = _resample(h, self.resample), _resample(x, self.resample)
        h = self.conv1(h)
        e = self.emb(F.silu(emb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """x + proj(softmax(q k^T / sqrt(d)) v) over the pixels, q, k, v = 1x1 convs of GN(x)."""

    def __init__(self, channels: int, heads: int, fp32: bool):
        super().__init__()
        self.heads, self.fp32 = heads, fp32
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))  # [B, heads, HW, d]
        out = attention(q, k, v, fp32=self.fp32)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Halve the resolution: a stride-2 3x3 conv (DDPM), or 2x2 average pooling."""

    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1) if with_conv else None

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) if self.conv is not None else F.avg_pool2d(x, 2)


class Upsample(nn.Module):
    """Double the resolution: nearest neighbour, then a 3x3 conv (DDPM) if ``with_conv``."""

    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if with_conv else None

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.conv is not None else x


class Stage(nn.Module):
    """Layers run in sequence; residual blocks also take the embedding. The unit of
    gradient checkpointing."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        for layer in self.layers:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h


class UNetModel(nn.Module):
    def __init__(self, spec: DataSpec, cfg: UNet):
        super().__init__()
        ch, mult, n_res = cfg.channels, cfg.channel_mult, cfg.num_res_blocks
        emb_dim = 4 * ch
        self.checkpoint, self.channels_last = cfg.checkpoint, cfg.channels_last
        features = make_embedding(cfg.embedding, ch, cfg.fourier_scale)
        self.noise_embed = NoiseEmbedding(features, ch, emb_dim, spec.augment_dim)
        self.label_embed = LabelEmbedding(spec.num_classes, emb_dim) if spec.num_classes else None

        def res(cin, cout, resample=None):
            return ResBlock(cin, cout, emb_dim, cfg.dropout, cfg.scale_shift, resample)

        def attn(c):
            return AttentionBlock(c, cfg.heads(c), cfg.attention_fp32)

        resolution = spec.shape[-1]
        self.inp = nn.Conv2d(spec.shape[0], ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, cur = [ch], ch
        for level, m in enumerate(mult):
            for _ in range(n_res):
                layers = [res(cur, ch * m)]
                cur = ch * m
                if resolution in cfg.attention_resolutions:
                    layers.append(attn(cur))
                self.down.append(Stage(*layers))
                skips.append(cur)
            if level < len(mult) - 1:
                down = res(cur, cur, "down") if cfg.resblock_updown else \
                    Downsample(cur, cfg.resample_with_conv)
                self.down.append(Stage(down))
                skips.append(cur)
                resolution //= 2
        middle = [res(cur, cur)] + ([attn(cur)] if cfg.mid_attention else []) + [res(cur, cur)]
        self.mid = Stage(*middle)
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for i in range(n_res + 1):
                layers = [res(cur + skips.pop(), ch * m)]
                cur = ch * m
                if resolution in cfg.attention_resolutions:
                    layers.append(attn(cur))
                if level > 0 and i == n_res:
                    layers.append(res(cur, cur, "up") if cfg.resblock_updown else
                                  Upsample(cur, cfg.resample_with_conv))
                    resolution *= 2
                self.up.append(Stage(*layers))
        self.out_norm = group_norm(cur)
        self.out = nn.Conv2d(cur, spec.out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, time: Tensor, labels: Tensor | None = None,
                augment_labels: Tensor | None = None) -> Tensor:
        emb = self.noise_embed(time, augment_labels)
        if self.label_embed is not None:
            emb = emb + self.label_embed(labels, x.shape[0], x.device)
        if chosen(self.channels_last, "channels_last", x.device):
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.inp(x)
        hs = [h]
        for stage in self.down:
            h = run_block(stage, h, emb, enabled=self.checkpoint)
            hs.append(h)
        h = run_block(self.mid, h, emb, enabled=self.checkpoint)
        for stage in self.up:
            h = run_block(stage, torch.cat([h, hs.pop()], dim=1), emb, enabled=self.checkpoint)
        with fp32_region(h):  # the output head in fp32 (seed 001 §12.4)
            return self.out(F.silu(self.out_norm(h.float())))


class UNet(Architecture):
    """DDPM/ADM U-Net: GroupNorm ResBlocks (added or scale-shift embedding), attention, presets."""

    name = "unet"
    takes_augment_labels = True  # EDM's augmentation labels join the noise embedding
    PRESETS = {
        # Ho et al. 2020, appendix B: 35.7M parameters on CIFAR-10.
        "ddpm_cifar10": dict(channels=128, channel_mult=[1, 2, 2, 2], num_res_blocks=2,
                             attention_resolutions=[16], dropout=0.1, num_heads=1,
                             num_head_channels=0, scale_shift=False, resblock_updown=False,
                             resample_with_conv=True, mid_attention=True),
        # 8x8 digits: three levels (8, 4, 2), attention at 4x4 and in the 2x2 middle.
        "digits": dict(channels=32, channel_mult=[1, 2, 2], num_res_blocks=1,
                       attention_resolutions=[4], dropout=0.0, num_heads=4, num_head_channels=0,
                       scale_shift=True, resblock_updown=False, resample_with_conv=True,
                       mid_attention=True),
        # 28x28 Fashion-MNIST: few channels at full resolution, width and attention at 7x7.
        "fashion_mnist": dict(channels=24, channel_mult=[1, 2, 4], num_res_blocks=1,
                              attention_resolutions=[7], dropout=0.0, num_heads=4,
                              num_head_channels=0, scale_shift=True, resblock_updown=False,
                              resample_with_conv=True, mid_attention=True),
    }

    preset: Literal["none", "ddpm_cifar10", "digits", "fashion_mnist"] = Field(
        "none", description="named layout; fields set beside it override it")
    channels: int = Field(64, ge=8, le=4096, description="base channel count")
    channel_mult: list[Annotated[int, Field(ge=1, le=64)]] = Field(
        [1, 2], min_length=1, max_length=16, description="channel multiplier per level")
    num_res_blocks: int = Field(2, ge=1, le=64, description="residual blocks per level")
    attention_resolutions: list[int] = Field(
        [4], description="resolutions (in pixels) with self-attention")
    mid_attention: bool = Field(True, description="self-attention between the middle ResBlocks")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in residual blocks")
    num_heads: int = Field(4, ge=1, le=1024, description="attention heads (when num_head_channels is 0)")
    num_head_channels: int = Field(
        0, ge=0, description="channels per attention head (ADM: 64); 0 uses num_heads")
    scale_shift: bool = Field(
        True, description="ADM's scale-shift of GroupNorm by the embedding; false adds it (DDPM)")
    resblock_updown: bool = Field(
        False, description="resample inside residual blocks (ADM, BigGAN) instead of by convs")
    resample_with_conv: bool = Field(
        True, description="3x3 convs in down/upsampling (DDPM); false: pooling / nearest only")
    embedding: Literal["sinusoidal", "fourier"] = Field(
        "sinusoidal", description="noise-level features")
    fourier_scale: float = Field(16.0, gt=0, description="std of the Fourier frequencies")
    attention_fp32: bool = Field(
        True, description="attention scores and softmax in fp32 under autocast")
    checkpoint: bool = Field(False, description="gradient checkpointing per stage (less memory)")
    channels_last: bool | Auto = Field(
        False, description="NHWC memory format for the convolutions; auto: on the devices "
        "where it measured faster (nn/auto_speed.py; the input is converted, the weights follow)")

    def heads(self, channels: int) -> int:
        """Attention heads at a width: channels / num_head_channels, or num_heads."""
        if self.num_head_channels:
            return max(1, channels // self.num_head_channels)
        return self.num_heads

    def build(self, spec: DataSpec) -> nn.Module:
        if len(spec.shape) != 3:
            raise ArchitectureError(f"unet takes images (C, H, W), not shape {spec.shape}")
        if spec.shape[-1] % 2 ** (len(self.channel_mult) - 1):
            raise ArchitectureError(f"image size {spec.shape[-1]} is not divisible by "
                             f"2^{len(self.channel_mult) - 1} for channel_mult {self.channel_mult}")
        for m in self.channel_mult:
            width = self.channels * m
            if width % self.heads(width):
                raise ArchitectureError(f"width {width} does not split into {self.heads(width)} heads")
        net = UNetModel(spec, self)
        return net.to(memory_format=torch.channels_last) if self.channels_last is True else net


@hookimpl
def register_architectures(register):
    register(UNet)
