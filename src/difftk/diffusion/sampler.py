"""Generation algorithms. Each is a plain function of (model, x, grid) in the shape of
k-diffusion's samplers, behind a component that holds its parameters.

Every sampler calls its model through one protocol, ``model(x_t, level) -> Denoised``
(sampler_model.py): x_t = alpha x0 + sigma eps for the whole batch at one ``Level`` (grids.py),
answered with the x0 estimate and the reverse step's variance. A sampler that steps in
EDM's coordinates x = x_t / alpha converts at the call. Every sampler reports each step to
an optional ``callback`` (k-diffusion's shape, ``report``), has the knobs of where it steps
(``steps``, ``grid``; the Karras grid's range and rho only where its default grid is in
EDM's sigma, ``SigmaGridSampler``) and of conditioning (a tensor of class labels and a
classifier-free guidance scale), and reports how many network evaluations each sample cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import Field, model_validator
from torch import Tensor

from difftk.component import Component
from difftk.diffusion.grids import TABLE_GRIDS, Grid, GridKind, Level, make_grid
from difftk.diffusion.levels import LOG_SNR_MIN
from difftk.diffusion.sampler_model import GuidedModel
from difftk.diffusion.table_rule import TableNeed, UsesTable

# A per-step callback: called once per step with {"x", "i", "alpha", "sigma", "denoised"}.
StepCallback = Callable[[dict[str, Any]], None]

# The Karras grid of samplers without the knobs (Karras et al. 2022: sigma in [0.002, 80],
# rho = 7), clipped to the schedule's range like every Karras grid.
KARRAS_SIGMA_MIN, KARRAS_SIGMA_MAX, KARRAS_RHO = 0.002, 80.0, 7.0


@dataclass
class SampleResult:
    x: Tensor
    nfe: int  # network evaluations per sample (a guided evaluation counts two)


def report(callback: StepCallback | None, i: int, x_t: Tensor, level: Level,
           denoised: Tensor) -> None:
    """Tell ``callback`` about step i: the state x_t = alpha x0 + sigma eps the model saw at
    ``level`` and its x0 estimate (k-diffusion's ``callback({'x', 'i', 'sigma', 'denoised'})``,
    in difftk's coordinates: x is x_t and sigma the noise scale in x_t, not EDM's sigma)."""
    if callback is not None:
        callback({"x": x_t, "i": i, "alpha": level.alpha, "sigma": level.sigma,
                  "denoised": denoised})


class Sampler(Component, UsesTable):
    """Turns standard normal noise into samples with a denoiser."""

    family: ClassVar[str] = "samplers"

    steps: int = Field(18, ge=1, le=100_000, description="number of noisy levels the sampler visits")
    grid: GridKind = Field("karras", description="step grid: karras, uniform_t, log_sigma, or "
                           "a table spacing linspace / leading / trailing")
    guidance: float = Field(1.0, ge=0, description="guidance scale s in D_g + s (D - D_g), "
                            "D_g unconditional (classifier-free) or the --guide model "
                            "(autoguidance): 1 unguided, 0 D_g alone, >1 guided")
    guidance_sigma_min: float = Field(0.0, ge=0, description="guide only where EDM sigma >= "
                                      "this (guidance interval, Kynkaanniemi et al. 2024)")
    guidance_sigma_max: float = Field(math.inf, ge=0, allow_inf_nan=True, description="guide "
                                      "only where EDM sigma <= this (inf: no upper end)")

    @model_validator(mode="after")
    def _interval_ordered(self):
        if self.guidance_sigma_min > self.guidance_sigma_max:
            raise ValueError("guidance_sigma_min must not exceed guidance_sigma_max")
        return self

    def num_levels(self, schedule) -> int:
        return self.steps

    def sigma_grid(self) -> tuple[float, float, float]:
        """(sigma_min, sigma_max, rho) of the karras and log_sigma grids."""
        return KARRAS_SIGMA_MIN, KARRAS_SIGMA_MAX, KARRAS_RHO

    def noise_levels(self, schedule) -> Grid:
        """The grid this sampler visits on ``schedule``."""
        return make_grid(self.grid, schedule, self.num_levels(schedule), *self.sigma_grid())

    def sample(self, denoiser, noise: Tensor, generator: torch.Generator,
               labels: Tensor | None = None, callback: StepCallback | None = None,
               guide=None) -> SampleResult:
        """Samples from noise ~ N(0, I); ``labels`` (one class index per sample) condition a
        class-conditional denoiser; ``callback`` hears about every step (``report``);
        ``guide``, a weaker denoiser of the same data, guides by autoguidance instead of the
        unconditional prediction."""
        model = GuidedModel(denoiser, None if labels is None else labels.to(noise.device),
                            self.guidance, guide,
                            (self.guidance_sigma_min, self.guidance_sigma_max))
        grid = self.noise_levels(denoiser.schedule)
        with torch.no_grad():
            x = self.solve(model, noise, grid, generator, callback)
        return SampleResult(x.float(), model.nfe)

    def solve(self, model: GuidedModel, noise: Tensor, grid: Grid, generator: torch.Generator,
              callback: StepCallback | None = None) -> Tensor:
        """The algorithm: from noise to a sample, visiting the levels of ``grid``."""
        raise NotImplementedError

    def table_need(self) -> TableNeed | None:
        need = super().table_need()
        if need is None and self.grid in TABLE_GRIDS:
            return TableNeed("grid", "picks integer steps of",
                             'grid = "karras", "log_sigma" or "uniform_t"',
                             subject=f"the {self.grid} spacing")
        return need


class SigmaGridSampler(Sampler):
    """A sampler whose default grid is in EDM's sigma: it has that grid's range and rho."""

    sigma_min: float = Field(KARRAS_SIGMA_MIN, gt=0, description="smallest nonzero EDM sigma "
                             "(karras and log_sigma grids)")
    sigma_max: float = Field(KARRAS_SIGMA_MAX, gt=0, description="largest EDM sigma (karras and "
                             "log_sigma grids; clipped to the schedule's range)")
    rho: float = Field(KARRAS_RHO, gt=0, description="Karras grid exponent")

    def sigma_grid(self) -> tuple[float, float, float]:
        return self.sigma_min, self.sigma_max, self.rho


# EDM-coordinate samplers cannot start at sigma_edm = inf (zero terminal SNR); they start
# at the logSNR floor of Levels.sigma_edm instead, where x / sigma_edm is pure noise to
# float64 precision (the denoiser still sees the grid's time there).
SIGMA_EDM_CAP = math.exp(-LOG_SNR_MIN / 2)


def finite_sigmas(grid: Grid) -> Tensor:
    """The grid's EDM sigmas with an infinite first level replaced by SIGMA_EDM_CAP."""
    return grid.sigma_edm.clamp(max=SIGMA_EDM_CAP)
