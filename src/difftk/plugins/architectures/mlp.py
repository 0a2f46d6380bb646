"""A residual MLP for vector data such as the 2-D toy distributions (images are flattened).

Pre-norm residual blocks h = h + W2 SiLU(W1 LN(h + emb)), the noise embedding added to the
input of every block; noise features sinusoidal (Ho et al. 2020) or Gaussian Fourier
(Tancik et al. 2020; seed 004 Coding I.1). The embedding and the output head run in fp32.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from difftk.hookspecs import hookimpl
from difftk.nn.architecture import Architecture, DataSpec
from difftk.nn.checkpointing import run_block
from difftk.nn.conditioning import LabelEmbedding, NoiseEmbedding
from difftk.nn.embedding import make_embedding
from difftk.nn.fp32 import LayerNorm32, fp32_region


class ResidualBlock(nn.Module):
    """h + Linear(SiLU(Linear(LN(h + emb))))."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(LayerNorm32(width), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, width))

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.net(h + emb)


class ResidualMLP(nn.Module):
    def __init__(self, spec: DataSpec, cfg: MLP):
        super().__init__()
        self.shape = spec.shape
        # Images are flattened; the output keeps out_channels per pixel.
        self.out_shape = (spec.out_channels, *spec.shape[1:]) if len(spec.shape) > 1 \
            else (spec.out_channels,)
        dim, out = math.prod(spec.shape), math.prod(self.out_shape)
        self.checkpoint = cfg.checkpoint
        features = make_embedding(cfg.embedding, cfg.embed_dim, cfg.fourier_scale)
        self.noise_embed = NoiseEmbedding(features, cfg.embed_dim, cfg.width)
        self.label_embed = LabelEmbedding(spec.num_classes, cfg.width) if spec.num_classes else None
        self.inp = nn.Linear(dim, cfg.width)
        self.blocks = nn.ModuleList(ResidualBlock(cfg.width) for _ in range(cfg.depth))
        self.out_norm = LayerNorm32(cfg.width)
        self.out = nn.Linear(cfg.width, out)

    def forward(self, x: Tensor, time: Tensor, labels: Tensor | None = None) -> Tensor:
        emb = self.noise_embed(time)
        if self.label_embed is not None:
            emb = emb + self.label_embed(labels, x.shape[0], x.device)
        h = self.inp(x.flatten(1)) + emb
        for block in self.blocks:
            h = run_block(block, h, emb, enabled=self.checkpoint)
        with fp32_region(h):  # the output head in fp32 (seed 001 §12.4)
            out = self.out(self.out_norm(h.float()))
        return out.reshape(x.shape[0], *self.out_shape)


class MLP(Architecture):
    """Residual MLP with a sinusoidal or Gaussian Fourier noise embedding, for vector data."""

    name = "mlp"
    width: int = Field(256, ge=8, le=65_536, description="hidden width")
    depth: int = Field(3, ge=1, le=1000, description="number of residual blocks")
    embedding: Literal["sinusoidal", "fourier"] = Field(
        "sinusoidal", description="noise-level features")
    embed_dim: int = Field(64, ge=2, le=65_536, description="size of the noise-level features")
    fourier_scale: float = Field(16.0, gt=0, description="std of the Fourier frequencies")
    checkpoint: bool = Field(False, description="gradient checkpointing per block (less memory)")

    def build(self, spec: DataSpec) -> nn.Module:
        return ResidualMLP(spec, self)


@hookimpl
def register_architectures(register):
    register(MLP)
