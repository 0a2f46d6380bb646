"""An adaptive probability-flow ODE sampler: Dormand-Prince 5(4) with error control
(diffusion/ode_solver.py) on the schedule's own time axis (diffusion/probability_flow.py).

SiT samples its ODE with torchdiffeq's dopri5 at atol 1e-6, rtol 1e-3 (Ma et al. 2024,
``sample.py``); Song et al. 2021 use RK45 at 1e-5. The solver picks its steps, so the number
of network evaluations is an outcome, reported per sample like every sampler's. Where the
axis reaches noise level zero (flow paths) it integrates to ``end`` above it; then, as EDM's
last step to sigma = 0, the sample is the model's x0 estimate there (one more evaluation).
"""

from __future__ import annotations

import torch
from pydantic import Field

from difftk.diffusion.grids import Grid
from difftk.diffusion.ode_solver import dopri5
from difftk.diffusion.probability_flow import axis_ends, flow_velocity, level_at
from difftk.diffusion.sampler import Sampler, report
from difftk.hookspecs import hookimpl


class Dopri5(Sampler):
    """Adaptive Dormand-Prince (RK45) integration of the probability-flow ODE in the
    schedule's time, for flow and diffusion schedules alike; NFE as the solver needs."""

    name = "dopri5"
    rtol: float = Field(1e-3, gt=0, le=1, description="relative tolerance (SiT: 1e-3)")
    atol: float = Field(1e-6, gt=0, le=1, description="absolute tolerance (SiT: 1e-6)")
    end: float = Field(1e-3, gt=0, lt=0.5, description="where the axis starts at the data: "
                       "stop this share of it above, then take the x0 estimate")

    def noise_levels(self, schedule) -> Grid:
        hi, lo = axis_ends(schedule, self.end)
        times = torch.tensor([hi, lo], dtype=torch.float64)
        alpha, sigma = schedule.alpha_sigma(times)
        zero = torch.zeros(1, dtype=torch.float64)
        clean = schedule.levels_from_sigma_edm(zero).alpha.double()
        return Grid(alpha=torch.cat([alpha, clean]), sigma=torch.cat([sigma, zero]),
                    sigma_edm=torch.cat([sigma / alpha, zero]),
                    t=torch.cat([times, zero]) if schedule.has_table else None,
                    schedule=schedule)

    def solve(self, model, noise, grid, generator, callback=None):
        schedule = grid.schedule
        hi, lo = axis_ends(schedule, self.end)
        x = noise.to(torch.float64) * grid.sigma[0]
        calls = []

        def x0_of(x_t, level):
            x0 = model(x_t, level).x0
            report(callback, len(calls), x_t, level, x0)
            calls.append(1)
            return x0

        x = dopri5(lambda u, y: flow_velocity(schedule, x0_of, u, y), x, hi, lo,
                   rtol=self.rtol, atol=self.atol).y
        return x0_of(x, level_at(schedule, lo)).to(torch.float64)


@hookimpl
def register_samplers(register):
    register(Dopri5)
