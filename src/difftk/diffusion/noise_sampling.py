"""Training noise-level distributions: where to learn (seed 001 §5.1, §5.2, §6, §8.2).

A distribution q draws the noise levels of a batch, in terms the schedule understands,
and states its density on one common axis, logSNR (``log_snr_density``), so sampling
densities and loss weights can be compared (seed 001 §6.1: p_u(u) = p_t(t(u)) |dt/du|).

Importance sampling (seed 001 §5.2): E_p[l] = E_q[(p / q) l]. With ``importance = true``
each draw carries the weight p / q, where p is uniform t on the schedule's own time axis
(``Schedule.time_range``: t in [1, T], integer t for discrete draws, u in [0, 1] for
sigma-space schedules), the objective DDPM optimises. The weight is divided by
P_p(support of q), so it has mean 1 under q and the objective is p restricted to where q
draws. Density ratios do not depend on the coordinate, so p / q is the same in t, sigma
or logSNR.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from difftk.component import Component
from difftk.diffusion.levels import Levels


def time_jacobian(schedule, log_snr: Tensor) -> tuple[Tensor, Tensor]:
    """(t(logSNR), |dt / dlogSNR|) on the schedule's time axis, by autograd of its inverse map."""
    x = log_snr.detach().to(torch.float64).requires_grad_(True)
    with torch.enable_grad():
        t = schedule.time_from_log_snr(x)
        (grad,) = torch.autograd.grad(t.sum(), x)
    return t.detach(), torch.nan_to_num(grad.abs(), nan=0.0, posinf=0.0)


def uniform_time_density(schedule, log_snr: Tensor) -> Tensor:
    """p(logSNR) when t is uniform on the schedule's continuous time axis (seed 001 §6.1)."""
    lo, hi = schedule.time_range()
    t, jac = time_jacobian(schedule, log_snr)
    inside = (t >= lo) & (t <= hi)
    return torch.where(inside, jac / (hi - lo), torch.zeros_like(jac))


def time_mass(schedule, log_snr_lo: float, log_snr_hi: float) -> float:
    """P(logSNR in [lo, hi]) when t is uniform on the schedule's time axis."""
    lo, hi = schedule.time_range()
    ends = schedule.time_from_log_snr(torch.tensor([log_snr_lo, log_snr_hi], dtype=torch.float64))
    ends = ends.clamp(lo, hi)
    return float((ends[0] - ends[1]).abs() / (hi - lo))


class NoiseSampler(Component):
    """Draws the noise levels of a training batch, in terms the schedule understands."""

    family: ClassVar[str] = "noise_sampling"

    importance: bool = Field(
        False, description="weight each draw by p/q, p = uniform t on the schedule, so training "
                           "optimises the uniform-t objective (mean weight 1)")

    def draw(self, n: int, schedule, generator: torch.Generator, device) -> tuple[Levels, Any]:
        """n levels, and the drawn coordinate that ``importance_weight`` reads."""
        raise NotImplementedError

    def loss_history(self, schedule):
        """The state a loss-aware distribution learns from training (``LossHistory``), or None
        for a fixed distribution. The training loop keeps it, hands it to ``sample``, tells it
        each step's losses and saves it in the checkpoint."""
        return None

    def sample(self, n: int, schedule, generator: torch.Generator, device,
               history=None) -> Levels:
        """n levels (with importance weights where ``importance`` is on); ``history`` is the
        run's ``loss_history`` for a loss-aware distribution (None: its warm-up draw)."""
        levels, drawn = self.draw(n, schedule, generator, device)
        if self.importance:
            weight = self.importance_weight(drawn, schedule).to(levels.alpha.device)
            levels = replace(levels, weight=weight.float())
        return levels

    def log_snr_density(self, log_snr: Tensor, schedule) -> Tensor:
        """The density of logSNR = log(alpha^2 / sigma^2) under this distribution (float64).

        For draws of integer t this is the density of the continuous-t version.
        """
        raise NotImplementedError

    def log_snr_support(self, schedule) -> tuple[float, float]:
        """The logSNR interval this distribution draws from."""
        return -math.inf, math.inf

    def importance_weight(self, drawn: Any, schedule) -> Tensor:
        """p / q for draws whose logSNR is ``drawn``; subclasses drawing t override this."""
        log_snr = drawn.to(torch.float64)
        p = uniform_time_density(schedule, log_snr)
        q = self.log_snr_density(log_snr, schedule)
        ratio = torch.where(q > 0, p / q.clamp(min=1e-300), torch.zeros_like(p))
        return ratio / self.reference_mass(schedule)

    def reference_mass(self, schedule) -> float:
        """P_p(support of q): the uniform-t mass where this distribution draws."""
        lo, hi = self.log_snr_support(schedule)
        return time_mass(schedule, lo, hi)

    def check(self, parts):
        schedule = parts.get("schedule")
        if self.importance and schedule is not None and self.reference_mass(schedule) <= 0:
            return [("importance", f"{self.name} draws only noise levels the schedule "
                     f'"{schedule.name}" never reaches, so p/q is zero everywhere; widen its '
                     "range or turn importance off")]
        return []
