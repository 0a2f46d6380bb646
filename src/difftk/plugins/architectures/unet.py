"""A DDPM / ADM style U-Net (Ho et al. 2020; Dhariwal & Nichol 2021).

Residual blocks with GroupNorm, dropout and a scale-shift noise embedding;
self-attention at chosen resolutions; channel multipliers per level; optional class
embedding. Normalisation, softmax and the embedding run in fp32 under autocast
(seed 001 §12.4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from difftk.hookspecs import hookimpl
from difftk.nn.architecture import Architecture, DataSpec
from difftk.nn.embedding import SinusoidalEmbedding


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in fp32 whatever the autocast dtype."""

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float()).to(x.dtype)


def _norm(ch: int) -> nn.GroupNorm:
    groups = math.gcd(32, ch)
    return GroupNorm32(groups, ch)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = _norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = _norm(cout)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.heads = heads if ch % heads == 0 else 1
        self.norm = _norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        q, k, v = (t.transpose(-1, -2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class _UNet(nn.Module):
    def __init__(self, spec: DataSpec, ch: int, mult: list[int], num_res_blocks: int,
                 attn_res: list[int], dropout: float, heads: int):
        super().__init__()
        cin, res = spec.shape[0], spec.shape[-1]
        emb_dim = 4 * ch
        self.time_embed = nn.Sequential(SinusoidalEmbedding(ch), nn.Linear(ch, emb_dim), nn.SiLU(),
                                        nn.Linear(emb_dim, emb_dim))
        self.label_embed = nn.Embedding(spec.num_classes + 1, emb_dim) if spec.num_classes else None
        self.inp = nn.Conv2d(cin, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [ch]
        cur = ch
        for level, m in enumerate(mult):
            for _ in range(num_res_blocks):
                blocks = nn.ModuleList([ResBlock(cur, ch * m, emb_dim, dropout)])
                cur = ch * m
                if res in attn_res:
                    blocks.append(Attention(cur, heads))
                self.down.append(blocks)
                skips.append(cur)
            if level < len(mult) - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(cur, cur, 3, stride=2, padding=1)]))
                skips.append(cur)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(cur, cur, emb_dim, dropout), Attention(cur, heads),
                                  ResBlock(cur, cur, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for level, m in reversed(list(enumerate(mult))):
            for i in range(num_res_blocks + 1):
                blocks = nn.ModuleList([ResBlock(cur + skips.pop(), ch * m, emb_dim, dropout)])
                cur = ch * m
                if res in attn_res:
                    blocks.append(Attention(cur, heads))
                if level > 0 and i == num_res_blocks:
                    blocks.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    blocks.append(nn.Conv2d(cur, cur, 3, padding=1))
                    res *= 2
                self.up.append(blocks)
        self.out_norm = _norm(cur)
        self.out = nn.Conv2d(cur, spec.out_channels, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @staticmethod
    def _run(blocks, h, emb):
        for layer in blocks:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        return h

    def forward(self, x, time, labels=None):
        emb = self.time_embed(time)
        if self.label_embed is not None:
            if labels is None:  # the null label, index num_classes, for unconditional calls
                labels = torch.full((x.shape[0],), self.label_embed.num_embeddings - 1,
                                    device=x.device, dtype=torch.long)
            emb = emb + self.label_embed(labels)
        h = self.inp(x)
        hs = [h]
        for blocks in self.down:
            h = self._run(blocks, h, emb)
            hs.append(h)
        h = self._run(self.mid, h, emb)
        for blocks in self.up:
            h = self._run(blocks, torch.cat([h, hs.pop()], dim=1), emb)
        with torch.autocast(x.device.type, enabled=False):  # output head in fp32
            return self.out(F.silu(self.out_norm(h)).float())


class UNet(Architecture):
    """DDPM/ADM U-Net: ResBlocks with GroupNorm, scale-shift noise embedding, attention."""

    name = "unet"
    channels: int = Field(64, ge=8, description="base channel count")
    channel_mult: list[int] = Field([1, 2], min_length=1, description="channel multiplier per level")
    num_res_blocks: int = Field(2, ge=1, description="residual blocks per level")
    attention_resolutions: list[int] = Field(
        [4], description="resolutions (in pixels) with self-attention")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in residual blocks")
    num_heads: int = Field(4, ge=1, description="attention heads")

    def build(self, spec: DataSpec) -> nn.Module:
        if len(spec.shape) != 3:
            raise ValueError(f"unet takes images (C, H, W), not shape {spec.shape}")
        if spec.shape[-1] % 2 ** (len(self.channel_mult) - 1):
            raise ValueError(f"image size {spec.shape[-1]} is not divisible by "
                             f"2^{len(self.channel_mult) - 1} for channel_mult {self.channel_mult}")
        return _UNet(spec, self.channels, self.channel_mult, self.num_res_blocks,
                     self.attention_resolutions, self.dropout, self.num_heads)


@hookimpl
def register_architectures(register):
    register(UNet)
