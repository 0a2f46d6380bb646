"""Generation algorithms. Each is a plain function of (model, noise, grid) in the shape of
k-diffusion's samplers, behind a component that holds its parameters.

Every sampler has the same knobs for where it steps (``grid``, ``steps``, ``sigma_min``,
``sigma_max``, ``rho``; see grids.py) and for conditioning (a class label or a list, and
a classifier-free guidance scale; see guidance.py), and reports how many network
evaluations each sample cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from difftk.component import Component
from difftk.diffusion.grids import TABLE_GRIDS, Grid, GridKind, make_grid
from difftk.diffusion.guidance import GuidedModel, as_labels
from difftk.diffusion.levels import LOG_SNR_MIN


@dataclass
class SampleResult:
    x: Tensor
    nfe: int  # network evaluations per sample (a guided evaluation counts two)


class Sampler(Component):
    """Turns standard normal noise into samples with a denoiser."""

    family: ClassVar[str] = "samplers"
    requires_table: ClassVar[bool] = False

    steps: int = Field(18, ge=1, le=100_000, description="number of noisy levels the sampler visits")
    grid: GridKind = Field("karras", description="step grid: karras, uniform_t, log_sigma, or "
                           "a table spacing linspace / leading / trailing")
    sigma_min: float = Field(0.002, gt=0, description="smallest nonzero EDM sigma "
                             "(karras and log_sigma grids)")
    sigma_max: float = Field(80.0, gt=0, description="largest EDM sigma (karras and log_sigma "
                             "grids; clipped to the schedule's range)")
    rho: float = Field(7.0, gt=0, description="Karras grid exponent")
    guidance: float = Field(1.0, ge=0, description="classifier-free guidance scale s in "
                            "D_u + s (D_c - D_u): 1 conditional, 0 unconditional, >1 guided")

    def num_levels(self, schedule) -> int:
        return self.steps

    def noise_levels(self, schedule) -> Grid:
        """The grid this sampler visits on ``schedule``."""
        return make_grid(self.grid, schedule, self.num_levels(schedule), self.sigma_min,
                         self.sigma_max, self.rho)

    def sample(self, denoiser, noise: Tensor, generator: torch.Generator,
               labels: Tensor | int | list[int] | None = None) -> SampleResult:
        """Samples from noise ~ N(0, I); ``labels`` (one class, a list cycled over the
        batch, or a tensor) condition a class-conditional denoiser."""
        model = GuidedModel(denoiser, as_labels(labels, noise.shape[0], noise.device),
                            self.guidance)
        grid = self.noise_levels(denoiser.schedule)
        with torch.no_grad():
            x = self.solve(model, noise, grid, generator)
        return SampleResult(x.float(), model.nfe)

    def solve(self, model: GuidedModel, noise: Tensor, grid: Grid,
              generator: torch.Generator) -> Tensor:
        """The algorithm: from noise to a sample, visiting the levels of ``grid``."""
        raise NotImplementedError

    def check(self, parts):
        schedule = parts.get("schedule")
        if schedule is None or schedule.has_table:
            return []
        if self.requires_table:
            return [("name", f'the {self.name} sampler steps through a table of T levels, and '
                     f'the schedule "{schedule.name}" has none; use a t-space schedule or '
                     "another sampler")]
        if self.grid in TABLE_GRIDS:
            return [("grid", f'the {self.grid} spacing picks integer steps of a table of T '
                     f'levels, and the schedule "{schedule.name}" has none; use grid = '
                     '"karras", "log_sigma" or "uniform_t"')]
        return []


# EDM-coordinate samplers cannot start at sigma_edm = inf (zero terminal SNR); they start
# at the logSNR floor of Levels.sigma_edm instead, where x / sigma_edm is pure noise to
# float64 precision (the denoiser still sees the grid's time there).
SIGMA_EDM_CAP = math.exp(-LOG_SNR_MIN / 2)


def finite_sigmas(grid: Grid) -> Tensor:
    """The grid's EDM sigmas with an infinite first level replaced by SIGMA_EDM_CAP."""
    return grid.sigma_edm.clamp(max=SIGMA_EDM_CAP)
