"""Built-in training noise-level distributions (seed 001 §6.1 and §8.2)."""

from __future__ import annotations

import torch
from pydantic import Field

from difftk.diffusion.noise_sampling import NoiseSampler
from difftk.hookspecs import hookimpl


class UniformT(NoiseSampler):
    """t uniform over the schedule's time axis (Ho et al. 2020)."""

    name = "uniform_t"
    discrete: bool = Field(True, description="integer t in 1..T (t-space schedules)")

    def sample(self, n, schedule, generator, device):
        return schedule.sample_uniform_t(n, generator, device, discrete=self.discrete)


class LogNormal(NoiseSampler):
    """ln sigma ~ N(P_mean, P_std^2) in EDM's sigma (Karras et al. 2022; seed 001 §8.2.3)."""

    name = "log_normal"
    P_mean: float = Field(-1.2, description="mean of ln sigma")
    P_std: float = Field(1.2, gt=0, description="standard deviation of ln sigma")

    def sample(self, n, schedule, generator, device):
        z = torch.randn(n, generator=generator, device=device, dtype=torch.float64)
        return schedule.levels_from_sigma_edm(torch.exp(self.P_mean + self.P_std * z))


@hookimpl
def register_noise_sampling(register):
    register(UniformT)
    register(LogNormal)
