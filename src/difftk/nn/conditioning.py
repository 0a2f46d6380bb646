"""Conditioning inputs every architecture shares: the noise-level embedding (with the
augmentation labels, where a network takes them) and class labels."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from difftk.nn.fp32 import fp32_region


class NoiseEmbedding(nn.Module):
    """features(time) -> Linear -> SiLU -> Linear, all in fp32 (seed 001 §12.2: the timestep
    embedding's intermediates are easily truncated in low precision).

    With ``augment_dim`` > 0 the augmentation labels enter as EDM's SongUNet takes them
    (Karras et al. 2022, App. F.2; ``augment_dim``, ``map_augment``): a bias-free linear map
    of the labels added to the noise features before the MLP. Being bias-free, labels of
    zeros (or None, as at sampling) leave the embedding as if there were no augmentation.
    """

    def __init__(self, features: nn.Module, feature_dim: int, dim: int, augment_dim: int = 0):
        super().__init__()
        self.features = features
        self.mlp = nn.Sequential(nn.Linear(feature_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.augment = None
        if augment_dim:
            self.augment = nn.Linear(augment_dim, feature_dim, bias=False)
            nn.init.xavier_uniform_(self.augment.weight)  # EDM's init_mode for map_augment

    def forward(self, time: Tensor, augment_labels: Tensor | None = None) -> Tensor:
        with fp32_region(time):
            features = self.features(time.float()).float()
            if augment_labels is not None:
                if self.augment is None:
                    raise ValueError("augmentation labels given to a network built without "
                                     "augment_dim")
                features = features + self.augment(augment_labels.float())
            return self.mlp(features)


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
