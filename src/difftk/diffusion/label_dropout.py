"""Label dropout for classifier-free guidance (Ho & Salimans 2022): one network learns both
p(x | c) and p(x) when a share of its training labels is replaced by the null label."""

from __future__ import annotations

import torch
from torch import Tensor


def drop_labels(labels: Tensor, p: float, null: int, generator: torch.Generator) -> Tensor:
    """Replace each label by the null label with probability p (label dropout, Ho & Salimans
    2022), so one network learns both p(x | c) and p(x) for classifier-free guidance."""
    if p <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    return torch.where(drop, torch.full_like(labels, null), labels)
