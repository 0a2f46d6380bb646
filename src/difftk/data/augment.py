"""Augmentation pipelines (recipe section ``[augment]``): per-item random transforms of the
training images whose parameters the network is told (Karras et al. 2022, App. F.2).

EDM augments geometrically (flips, rotations, scaling, translation) and passes each image's
augmentation parameters, the *augmentation labels*, to the network as a conditioning input;
at sampling time the labels are zero, so the model generates un-augmented images while the
augmentations still regularise training (and do not leak into the samples).

The contract splits a pipeline in two so that a run's result does not depend on its world
size: ``draw`` takes the random numbers of the whole global batch (a [B, k] tensor, keyed by
the step like the noise, train/draws.py), each process slices its items' rows, and
``apply`` is a deterministic function of the images and their rows. A resumed run therefore
augments exactly as an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from difftk.component import Component


class Augmentation(Component):
    """A per-item random transform of training images, with labels that describe it."""

    family: ClassVar[str] = "augmentations"

    def label_dim(self) -> int:
        """Length of each image's augmentation-label vector; 0: the network is told nothing."""
        return 0

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        """The random numbers of ``n`` items, one row each ([n, k], float32 on ``device``)."""
        raise NotImplementedError

    def apply(self, images: Tensor, draws: Tensor) -> tuple[Tensor, Tensor | None]:
        """The augmented images (same shape) and their labels ([N, label_dim()] float32, or
        None when label_dim() is 0), a pure function of ``images`` and their ``draws`` rows."""
        raise NotImplementedError

    def check(self, parts) -> list[tuple[str, str]]:
        """Labels need a network that takes them (DataSpec.augment_dim)."""
        model = parts.get("model")
        if self.label_dim() and model is not None and not model.takes_augment_labels:
            return [("name", f'the {self.name} augmentation passes augmentation labels to the '
                             f'network, and the architecture "{model.name}" cannot take them; '
                             'use unet or dit, or [augment] name = "none"')]
        return []


@dataclass
class AugmentDraws:
    """An augmentation and the rows of its draws for some items of a batch."""

    augmentation: Augmentation
    draws: Tensor  # [items, k]

    def part(self, items: slice) -> AugmentDraws:
        return AugmentDraws(self.augmentation, self.draws[items])

    def apply(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """(augmented images, augmentation labels or None) of these items."""
        return self.augmentation.apply(images, self.draws)
