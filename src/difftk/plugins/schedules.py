"""Built-in noise schedules (seed 001 §6.3, §8.1.1; seed 004 Theory II)."""

from __future__ import annotations

import torch
from pydantic import Field, model_validator

from difftk.diffusion.schedule import DiscreteSchedule, SigmaSchedule
from difftk.hookspecs import hookimpl


class Linear(DiscreteSchedule):
    """DDPM's linear betas from beta_start to beta_end over T steps (Ho et al. 2020)."""

    name = "linear"
    T: int = Field(1000, ge=2, description="number of diffusion steps")
    beta_start: float = Field(1e-4, gt=0, lt=1, description="beta_1")
    beta_end: float = Field(0.02, gt=0, lt=1, description="beta_T")

    def betas(self):
        return torch.linspace(self.beta_start, self.beta_end, self.T, dtype=torch.float64)


class EDM(SigmaSchedule):
    """EDM's schedule sigma(t) = t, s(t) = 1 on [sigma_min, sigma_max] (Karras et al. 2022)."""

    name = "edm"
    sigma_min: float = Field(0.002, gt=0, description="smallest noise level")
    sigma_max: float = Field(80.0, gt=0, description="largest noise level")

    @model_validator(mode="after")
    def _ordered(self):
        if self.sigma_min >= self.sigma_max:
            raise ValueError("sigma_min must be smaller than sigma_max")
        return self

    def sigma_at(self, u):
        return self.sigma_min + u * (self.sigma_max - self.sigma_min)

    def sigma_edm_range(self):
        return self.sigma_min, self.sigma_max


@hookimpl
def register_schedules(register):
    register(Linear)
    register(EDM)
