"""Generation algorithms. Each is a plain function of (denoiser, noise, grid) in the
shape of k-diffusion's samplers, behind a component that holds its parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from difftk.component import Component


@dataclass
class SampleResult:
    x: Tensor
    nfe: int  # network evaluations per sample


class Sampler(Component):
    """Turns standard normal noise into samples with a denoiser."""

    family: ClassVar[str] = "samplers"
    requires_table: ClassVar[bool] = False

    steps: int = Field(18, ge=0, description="number of steps (0: the sampler's default)")

    def sample(self, denoiser, noise: Tensor, generator: torch.Generator,
               labels: Tensor | None = None) -> SampleResult:
        raise NotImplementedError

    def check(self, parts):
        schedule = parts.get("schedule")
        if self.requires_table and schedule is not None and not schedule.has_table:
            return [("name", f'the {self.name} sampler steps through a table of T levels, and '
                     f'the schedule "{schedule.name}" has none; use a t-space schedule or '
                     "another sampler")]
        return []
