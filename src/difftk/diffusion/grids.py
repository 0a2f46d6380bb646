"""Noise-level grids for samplers: which levels a sampler visits, from noisy to clean.

A grid is n levels of decreasing noise followed by the clean end (sigma = 0), each
given in both coordinates of DESIGN.md: (alpha, sigma) for x_t = alpha x0 + sigma eps,
and EDM's sigma_edm = sigma / alpha. Kinds (a parameter of every sampler):

- ``karras``: Karras et al. 2022 eq. 5, uniform in sigma_edm^(1/rho) (rho = 7).
- ``log_sigma``: uniform in log sigma_edm (k-diffusion's ``get_sigmas_exponential``).
- ``uniform_t``: uniform on the schedule's own time axis (t in [1, T] for a t-space
  schedule, u in [0, 1] for a sigma-space one or a flow path), from its noisy end to its
  clean end (``uniform_times``).
- ``linspace`` / ``leading`` / ``trailing``: the integer-step spacings of a t-space
  schedule's table (diffusers ``timestep_spacing``; Lin et al. 2024 Table 2). ``linspace``
  is also Nichol & Dhariwal's respacing with one section. ``trailing`` always includes
  t = T, so at zero terminal SNR sampling starts where the process really ends.

difftk's table index t = 1..T is diffusers' index + 1 (index 0 is the clean level).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from difftk.diffusion.levels import Levels

GridKind = Literal["karras", "uniform_t", "log_sigma", "linspace", "leading", "trailing"]
TABLE_GRIDS = ("linspace", "leading", "trailing")  # integer steps of a schedule's table


@dataclass(frozen=True)
class Level:
    """One noise level shared by a whole batch, as a sampler visits it: x_t = alpha x0 +
    sigma eps, with the schedule's time t where the grid knows it (else the schedule's map
    from the level to the network's conditioning decides)."""

    alpha: float
    sigma: float
    t: float | None = None

    def batch(self, n: int, device, dtype: torch.dtype = torch.float32) -> Levels:
        """The level repeated for n samples, in the network's dtype (float32, or float64 for
        a float64 model, so its noise level is not rounded)."""
        def full(v):
            return None if v is None else torch.full((n,), v, device=device, dtype=dtype)
        return Levels(alpha=full(self.alpha), sigma=full(self.sigma), t=full(self.t))


@dataclass(frozen=True)
class Grid:
    """n noisy levels then the clean one, all float64 [n + 1], on ``schedule``.

    ``sigma_edm`` is infinite where alpha = 0 (zero terminal SNR); ``t`` is the
    schedule's time where it has one (t-space schedules), else None.
    """

    alpha: Tensor
    sigma: Tensor
    sigma_edm: Tensor
    t: Tensor | None
    schedule: Any = None

    def __len__(self) -> int:
        return self.alpha.shape[0]

    @property
    def steps(self) -> int:
        return len(self) - 1

    def level(self, i: int) -> Level:
        """The i-th level of the grid, in (alpha, sigma) coordinates."""
        return Level(float(self.alpha[i]), float(self.sigma[i]),
                     None if self.t is None else float(self.t[i]))

    def level_at_sigma_edm(self, sigma_edm: float, t: float | None = None) -> Level:
        """The schedule's level whose EDM sigma is ``sigma_edm`` (on or between the grid's
        levels: Karras's churn raises sigma off the grid). ``t`` overrides the time where
        the grid knows it. Computed in float64 through the schedule's time (a float64 model
        then sees its noise level unrounded), with sigma = alpha sigma_edm exactly."""
        s = torch.tensor([sigma_edm], dtype=torch.float64)
        time = self.schedule.time_from_log_snr(-2.0 * torch.log(s))
        alpha = float(self.schedule.alpha_sigma(time)[0][0])
        if t is None and self.schedule.has_table:
            t = float(time[0])
        return Level(alpha, alpha * sigma_edm, t)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022 eq. 5: n levels from sigma_max to sigma_min, then 0 (float64)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(
        1, dtype=torch.float64)
    inv = sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    return torch.cat([inv**rho, torch.zeros(1, dtype=torch.float64)])


def log_sigmas(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """n levels uniform in log sigma from sigma_max to sigma_min, then 0 (float64)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(
        1, dtype=torch.float64)
    log = math.log(sigma_max) + ramp * (math.log(sigma_min) - math.log(sigma_max))
    return torch.cat([log.exp(), torch.zeros(1, dtype=torch.float64)])


def table_timesteps(spacing: str, T: int, n: int) -> Tensor:
    """n integer steps in 1..T, decreasing, by a diffusers ``timestep_spacing`` (float64).

    Computed as diffusers' DDPMScheduler / DDIMScheduler ``set_timesteps`` compute them, in
    numpy float64 (0-based index i = t - 1), so difftk and diffusers pick the same steps for
    every n, float rounding included:
    linspace: ``np.linspace(0, T - 1, n).round()``; leading: ``np.arange(0, n) * (T // n)``
    (steps_offset 0); trailing: ``np.round(np.arange(T, 0, -T / n)) - 1``, which starts at
    t = T. improved-diffusion's ``space_timesteps`` with one section is linspace in exact
    arithmetic; its running float sum rounds the other way for 278 of the 1000 step counts
    (by one step; tests/test_timestep_spacing.py).
    """
    import numpy as np

    n = min(n, T)
    if spacing == "linspace":
        index = np.linspace(0, T - 1, n).round()
    elif spacing == "leading":
        index = (np.arange(0, n) * (T // n)).round()
    elif spacing == "trailing":
        index = np.round(np.arange(T, 0, -T / n)) - 1
    else:
        raise ValueError(f"unknown spacing {spacing!r}")
    steps = sorted({int(i) for i in index}, reverse=True)
    return torch.tensor(steps, dtype=torch.float64) + 1


def axis_starts_clean(schedule) -> bool:
    """Whether the schedule's time axis begins at noise level zero (flow paths: t = 0 is x0)."""
    t_lo = schedule.time_range()[0]
    _, sigma_lo = schedule.alpha_sigma(torch.tensor([t_lo], dtype=torch.float64))
    return float(sigma_lo[0]) == 0.0


def uniform_times(schedule, n: int) -> Tensor:
    """n times uniform on the schedule's axis from its noisy end toward its clean end.

    Where the axis ends at noise level zero (flow paths: t = 0 is the data) that end is the
    grid's clean level, not a noisy one, so the n levels are linspace(1, 0, n + 1)[:-1]:
    diffusers' FlowMatchEulerDiscreteScheduler grid (1, ..., 1/n) and SiT's ODE grid.
    Otherwise both ends are noisy levels (t = T .. 1, u = 1 .. 0 of a sigma range).
    """
    t_lo, t_hi = schedule.time_range()
    if axis_starts_clean(schedule):
        return torch.linspace(t_hi, t_lo, n + 1, dtype=torch.float64)[:-1]
    if n == 1:
        return torch.tensor([t_hi], dtype=torch.float64)
    return torch.linspace(t_hi, t_lo, n, dtype=torch.float64)


def _from_times(schedule, t: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    alpha, sigma = schedule.alpha_sigma(t)
    return alpha.double(), sigma.double(), (t if schedule.has_table else None)


def make_grid(kind: str, schedule, n: int, sigma_min: float = 0.002, sigma_max: float = 80.0,
              rho: float = 7.0) -> Grid:
    """The grid of ``kind`` with n noisy levels on ``schedule``.

    karras and log_sigma use [sigma_min, sigma_max] clipped to the range the schedule
    reaches (as EDM's sampler clips to the network's range); the others follow the
    schedule's own time axis and so include its ends.
    """
    if kind in ("karras", "log_sigma"):
        lo, hi = schedule.sigma_edm_range()
        s_lo, s_hi = max(sigma_min, lo), min(sigma_max, hi)
        s_lo = min(s_lo, s_hi)
        s = karras_sigmas(n, s_lo, s_hi, rho) if kind == "karras" else log_sigmas(n, s_lo, s_hi)
        levels = schedule.levels_from_sigma_edm(s[:-1])
        alpha = levels.alpha.double()
        sigma, t = alpha * s[:-1], (None if levels.t is None else levels.t.double())
        sigma_edm = s[:-1]
    else:
        if kind == "uniform_t":
            times = uniform_times(schedule, n)
        else:
            if not schedule.has_table:
                raise ValueError(f"the {kind} spacing needs a schedule with a table of T steps")
            times = table_timesteps(kind, schedule.num_steps, n)
        alpha, sigma, t = _from_times(schedule, times)
        sigma_edm = torch.where(alpha > 0, sigma / alpha.clamp(min=1e-300),
                                torch.full_like(alpha, math.inf))
    clean = schedule.levels_from_sigma_edm(torch.zeros(1, dtype=torch.float64))
    alpha0 = clean.alpha.double()
    zero = torch.zeros(1, dtype=torch.float64)
    return Grid(alpha=torch.cat([alpha, alpha0]), sigma=torch.cat([sigma, zero]),
                sigma_edm=torch.cat([sigma_edm, zero]),
                t=None if t is None else torch.cat([t, zero]), schedule=schedule)
