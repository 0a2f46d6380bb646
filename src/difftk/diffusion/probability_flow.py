"""The probability-flow ODE on a schedule's own time axis, for a model that answers x0.

For x_u = alpha(u) x0 + sigma(u) eps the ODE whose marginals are those of the forward process
is dx/du = alpha'(u) x0_hat + sigma'(u) eps_hat, with x0_hat = E[x0 | x_u] and eps_hat =
(x - alpha x0_hat) / sigma (Song et al. 2021 eq. 13, written in difftk's (alpha, sigma); on a
flow path it is the flow's velocity, Lipman et al. 2023). The derivatives are taken along the
schedule's axis u (``Schedule.alpha_sigma``) by autograd, so every schedule, a flow path
with its shift included, is integrated by one formula.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from difftk.diffusion.grids import Level, axis_starts_clean


def axis_rates(schedule, u: float) -> tuple[float, float, float, float]:
    """(alpha, sigma, d alpha / du, d sigma / du) at u on the schedule's axis (float64)."""
    x = torch.tensor([float(u)], dtype=torch.float64, requires_grad=True)
    with torch.enable_grad():
        alpha, sigma = schedule.alpha_sigma(x)
        rates = [torch.autograd.grad(v.sum(), x, retain_graph=True)[0] if v.requires_grad
                 else torch.zeros_like(x) for v in (alpha, sigma)]
    return float(alpha.detach()), float(sigma.detach()), float(rates[0]), float(rates[1])


def level_at(schedule, u: float) -> Level:
    """The level at axis time u, with the table's time where the schedule has one."""
    alpha, sigma, _, _ = axis_rates(schedule, u)
    return Level(alpha, sigma, float(u) if schedule.has_table else None)


def axis_ends(schedule, start: float) -> tuple[float, float]:
    """(u at the noise end, u nearest the data where the model can still be asked): the
    axis's low end, or ``start`` above it where the axis reaches noise level zero there."""
    lo, hi = schedule.time_range()
    return hi, (lo + start * (hi - lo) if axis_starts_clean(schedule) else lo)


def flow_velocity(schedule, x0_of: Callable[[Tensor, Level], Tensor], u: float, x: Tensor
                  ) -> Tensor:
    """dx/du at (u, x), from the model's x0 estimate ``x0_of(x, level)``."""
    alpha, sigma, d_alpha, d_sigma = axis_rates(schedule, u)
    level = Level(alpha, sigma, float(u) if schedule.has_table else None)
    x0 = x0_of(x, level).to(x.dtype)
    eps = (x - alpha * x0) / sigma
    return d_alpha * x0 + d_sigma * eps
