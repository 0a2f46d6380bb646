"""Conditioning inputs every architecture shares: the noise-level embedding and class labels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from difftk.nn.fp32 import fp32_region


class NoiseEmbedding(nn.Module):
    """features(time) -> Linear -> SiLU -> Linear, all in fp32 (seed 001 §12.2: the timestep
    embedding's intermediates are easily truncated in low precision)."""

    def __init__(self, features: nn.Module, feature_dim: int, dim: int):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(feature_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, time: Tensor) -> Tensor:
        with fp32_region(time):
            return self.mlp(self.features(time.float()).float())


class LabelEmbedding(nn.Module):
    """A learned vector per class plus one for the null label (index ``num_classes``).

    The null row is what unconditional calls (labels = None) and label dropout use, so one
    network serves classifier-free guidance.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.null = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: Tensor | None, batch: int, device: torch.device) -> Tensor:
        if labels is None:
            labels = torch.full((batch,), self.null, device=device, dtype=torch.long)
        return self.table(labels)
