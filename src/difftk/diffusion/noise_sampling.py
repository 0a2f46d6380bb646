"""Training noise-level distributions: where to learn (seed 001 §5.1, §6, §8.2)."""

from __future__ import annotations

from typing import ClassVar

import torch

from difftk.component import Component
from difftk.diffusion.levels import Levels


class NoiseSampler(Component):
    """Draws the noise levels of a training batch, in terms the schedule understands."""

    family: ClassVar[str] = "noise_sampling"

    def sample(self, n: int, schedule, generator: torch.Generator, device) -> Levels:
        raise NotImplementedError
