"""Diffusion Transformer, DiT (Peebles & Xie 2023), with QK-normalisation and 2-D RoPE.

Patchify a C x H x W image into (H/p)(W/p) tokens with a p x p stride-p convolution;
transformer blocks conditioned by adaLN-Zero: from c = embed(noise level) + embed(label)
each block regresses (shift, scale, gate) for its attention and MLP branches,

    x = x + gate_msa * Attn(LN(x) (1 + scale_msa) + shift_msa)
    x = x + gate_mlp * MLP(LN(x) (1 + scale_mlp) + shift_mlp)

with the modulation layer zero-initialised so every block starts as the identity (DiT §3.2).
A final adaLN LayerNorm and a zero-initialised linear map give p x p x out_channels per token,
then unpatchify. Queries and keys are RMS-normalised per head (QK-norm, seed 001 §5.4);
positions enter as fixed 2-D sincos features (DiT) or as axial 2-D rotary embeddings of q
and k (seed 001 §5.4). Attention runs through scaled_dot_product_attention, its scores in
fp32; LayerNorm, the modulation, the noise embedding and the output head run in fp32 and
the residual stream is kept in fp32 under autocast (seed 001 §12.4).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from difftk.hookspecs import hookimpl
from difftk.nn.architecture import Architecture, ArchitectureError, DataSpec
from difftk.nn.attention import attention
from difftk.nn.checkpointing import run_block
from difftk.nn.conditioning import LabelEmbedding, NoiseEmbedding
from difftk.nn.embedding import SinusoidalEmbedding
from difftk.nn.fp32 import LayerNorm32, RMSNorm32, fp32_region
from difftk.nn.position import Rope2d, sincos_2d

# DiT paper, Table 1: (depth, hidden size, heads) of each model size.
SIZES = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x (1 + scale) + shift, per sample, broadcast over tokens."""
    return x * (1 + scale[:, None]) + shift[:, None]


class SelfAttention(nn.Module):
    """Multi-head self-attention with optional QK-norm and rotary positions."""

    def __init__(self, dim: int, heads: int, qk_norm: bool, rope: Rope2d | None, fp32: bool):
        super().__init__()
        self.heads, self.fp32, self.rope = heads, fp32, rope
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm32(dim // heads, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm32(dim // heads, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope is not None:
            q, k = self.rope(q), self.rope(k)
        out = attention(q, k, v, fp32=self.fp32)  # [B, heads, N, head_dim]
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class DiTBlock(nn.Module):
    """A transformer block with adaLN-Zero conditioning (DiT §3.2)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool, rope: Rope2d | None,
                 fp32_attention: bool):
        super().__init__()
        self.norm1 = LayerNorm32(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads, qk_norm, rope, fp32_attention)
        self.norm2 = LayerNorm32(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, dim))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.modulation[1].weight)  # adaLN-Zero: gates start at 0
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        with fp32_region(x):  # the modulation in fp32, like the norms it scales
            mod = self.modulation(c.float())
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=1)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1)).float()
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2)).float()


class FinalLayer(nn.Module):
    """adaLN LayerNorm, then a zero-initialised linear map to p*p*out per token, in fp32."""

    def __init__(self, dim: int, patch: int, out_channels: int):
        super().__init__()
        self.norm = LayerNorm32(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * out_channels)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        for layer in (self.linear, self.modulation[1]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        with fp32_region(x):
            shift, scale = self.modulation(c.float()).chunk(2, dim=1)
            return self.linear(modulate(self.norm(x.float()), shift, scale))


class DiTModel(nn.Module):
    def __init__(self, spec: DataSpec, cfg: DiT):
        super().__init__()
        cin, height, width = spec.shape
        p, dim = cfg.patch_size, cfg.hidden_size
        self.patch, self.out_channels = p, spec.out_channels
        self.grid = (height // p, width // p)
        self.checkpoint = cfg.checkpoint
        self.patch_embed = nn.Conv2d(cin, dim, p, stride=p)
        self.noise_embed = NoiseEmbedding(SinusoidalEmbedding(cfg.frequency_dim), cfg.frequency_dim,
                                          dim, spec.augment_dim)
        self.label_embed = LabelEmbedding(spec.num_classes, dim) if spec.num_classes else None
        rope = None
        if cfg.position == "sincos":
            self.register_buffer("pos_embed", sincos_2d(dim, *self.grid), persistent=False)
        else:
            self.pos_embed = None
            rope = Rope2d(dim // cfg.num_heads, *self.grid, base=cfg.rope_base)
        self.blocks = nn.ModuleList(
            DiTBlock(dim, cfg.num_heads, cfg.mlp_ratio, cfg.qk_norm, rope, cfg.attention_fp32)
            for _ in range(cfg.depth))
        self.final = FinalLayer(dim, p, spec.out_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT's initialisation: Xavier-uniform linears with zero bias, N(0, 0.02) embeddings;
        the zero-initialised modulation and output layers keep their zeros."""
        zeroed = {id(m) for blk in self.blocks for m in blk.modulation} | \
            {id(m) for m in (self.final.linear, *self.final.modulation)}
        for m in self.modules():
            if isinstance(m, nn.Linear) and id(m) not in zeroed:
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:  # the augmentation labels' map has none
                    nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for layer in (self.noise_embed.mlp[0], self.noise_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        if self.label_embed is not None:
            nn.init.normal_(self.label_embed.table.weight, std=0.02)

    def forward(self, x: Tensor, time: Tensor, labels: Tensor | None = None,
                augment_labels: Tensor | None = None) -> Tensor:
        b = x.shape[0]
        c = self.noise_embed(time, augment_labels)
        if self.label_embed is not None:
            c = c + self.label_embed(labels, b, x.device).float()
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2).float()  # [B, N, dim], fp32 stream
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed
        for block in self.blocks:
            tokens = run_block(block, tokens, c, enabled=self.checkpoint)
        out = self.final(tokens, c)  # [B, N, p * p * out]
        gh, gw, p = *self.grid, self.patch
        out = out.reshape(b, gh, gw, p, p, self.out_channels)
        return torch.einsum("bhwpqc->bchpwq", out).reshape(b, self.out_channels, gh * p, gw * p)


PATCHES = (2, 4, 8)
PresetName = Literal["none", "DiT-S/2", "DiT-S/4", "DiT-S/8", "DiT-B/2", "DiT-B/4", "DiT-B/8",
                     "DiT-L/2", "DiT-L/4", "DiT-L/8", "DiT-XL/2", "DiT-XL/4", "DiT-XL/8"]


class DiT(Architecture):
    """Diffusion Transformer: patch tokens, adaLN-Zero blocks, QK-norm, 2-D RoPE or sincos."""

    name = "dit"
    takes_augment_labels = True  # EDM's augmentation labels join the noise embedding
    PRESETS = {f"DiT-{size}/{p}": dict(depth=d, hidden_size=h, num_heads=n, patch_size=p)
               for size, (d, h, n) in SIZES.items() for p in PATCHES}

    preset: PresetName = Field(
        "none", description="a DiT paper model (Table 1); fields set beside it override it")
    patch_size: int = Field(2, ge=1, le=256, description="side of the square patches")
    hidden_size: int = Field(384, ge=8, le=16_384, description="token width")
    depth: int = Field(12, ge=1, le=1000, description="number of transformer blocks")
    num_heads: int = Field(6, ge=1, le=1024, description="attention heads")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width / token width")
    position: Literal["rope", "sincos"] = Field(
        "rope", description="2-D rotary embeddings of q, k, or fixed sincos features added")
    rope_base: float = Field(10000.0, gt=1, description="base of the rotary frequencies")
    qk_norm: bool = Field(True, description="RMS-normalise queries and keys per head")
    frequency_dim: int = Field(256, ge=2, le=65_536,
                               description="size of the sinusoidal noise-level features")
    attention_fp32: bool = Field(
        True, description="attention scores and softmax in fp32 under autocast")
    checkpoint: bool = Field(False, description="gradient checkpointing per block (less memory)")
    paper: bool = Field(False, description=(
        "the DiT paper's network exactly (Peebles & Xie 2023; facebookresearch/DiT models.py): "
        "fixed sincos positions, no QK-norm, attention in the autocast precision; overrides "
        "position, qk_norm and attention_fp32"))

    def exact(self) -> DiT:
        """These settings with ``paper`` applied (what the network is built from)."""
        if not self.paper:
            return self
        return self.model_copy(update={"position": "sincos", "qk_norm": False,
                                       "attention_fp32": False})

    def build(self, spec: DataSpec) -> nn.Module:
        if self.paper:
            return self.exact().model_copy(update={"paper": False}).build(spec)
        if len(spec.shape) != 3:
            raise ArchitectureError(f"dit takes images (C, H, W), not shape {spec.shape}")
        _, height, width = spec.shape
        if height % self.patch_size or width % self.patch_size:
            raise ArchitectureError(f"image size {height}x{width} is not divisible by patch size "
                                    f"{self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ArchitectureError(f"hidden size {self.hidden_size} does not split into "
                                    f"{self.num_heads} heads")
        head_dim = self.hidden_size // self.num_heads
        if self.position == "rope" and head_dim % 4:
            raise ArchitectureError(f"2-D rotary embeddings need a head width divisible by 4 "
                                    f"(got {head_dim})")
        if self.position == "sincos" and self.hidden_size % 4:
            raise ArchitectureError(f"sincos positions need a hidden size divisible by 4 "
                                    f"(got {self.hidden_size})")
        return DiTModel(spec, self)


@hookimpl
def register_architectures(register):
    register(DiT)
