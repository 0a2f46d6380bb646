"""A residual MLP for vector data such as the 2-D toy distributions."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from difftk.hookspecs import hookimpl
from difftk.nn.architecture import Architecture, DataSpec
from difftk.nn.embedding import make_embedding


class _ResidualMLP(nn.Module):
    def __init__(self, dim: int, out: int, width: int, depth: int, embedding: nn.Module,
                 embed_dim: int, num_classes: int):
        super().__init__()
        self.embedding = embedding
        self.embed = nn.Sequential(nn.Linear(embed_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.label_embed = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(),
                          nn.Linear(width, width)) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, out))

    def forward(self, x, time, labels=None):
        emb = self.embed(self.embedding(time))
        if self.label_embed is not None:
            if labels is None:  # the null label, index num_classes, for unconditional calls
                labels = torch.full((x.shape[0],), self.label_embed.num_embeddings - 1,
                                    device=x.device, dtype=torch.long)
            emb = emb + self.label_embed(labels)
        h = self.inp(x) + emb
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)


class MLP(Architecture):
    """Residual MLP with a sinusoidal or Gaussian Fourier noise embedding, for vector data."""

    name = "mlp"
    width: int = Field(256, ge=8, description="hidden width")
    depth: int = Field(3, ge=1, description="number of residual blocks")
    embedding: Literal["sinusoidal", "fourier"] = Field(
        "sinusoidal", description="noise-level features")
    embed_dim: int = Field(64, ge=2, description="size of the noise-level features")
    fourier_scale: float = Field(16.0, gt=0, description="std of the Fourier frequencies")

    def build(self, spec: DataSpec) -> nn.Module:
        if len(spec.shape) != 1:
            raise ValueError(f"mlp takes vector data, not shape {spec.shape}")
        emb = make_embedding(self.embedding, self.embed_dim, self.fourier_scale)
        return _ResidualMLP(spec.shape[0], spec.out_channels, self.width, self.depth, emb,
                            self.embed_dim, spec.num_classes)


@hookimpl
def register_architectures(register):
    register(MLP)
