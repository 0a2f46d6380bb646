"""Flow samplers: the probability-flow ODE and SiT's SDE integrated in the path's own time.

Every model answers with its x0 estimate (diffusion/sampler.py); at a level (alpha, sigma)
of the path, with rates (alpha', sigma') from ``Schedule.path_derivative``, that estimate
gives the noise eps_hat = (x_t - alpha x0_hat) / sigma, the velocity
v = alpha' x0_hat + sigma' eps_hat (the flow ODE dx/dt = v; Lipman et al. 2023 eq. 1) and the
score s = -eps_hat / sigma, whatever target the network was trained on.

- flow_euler, flow_heun: Euler and Heun (explicit trapezoid) steps of dx/dt = v in t (SiT's
  ``sample_ode`` with torchdiffeq's fixed-grid "euler" / "heun2", Ma et al. 2024; diffusers'
  FlowMatchEulerDiscreteScheduler for Euler). docs/flow_matching.md shows that on the
  rectified-flow path flow_euler is exactly DDIM (eta 0) and EDM's Euler on the same grid;
  on any curved path (GVP) and for Heun it is a different integrator.
- flow_sde: SiT's Euler-Maruyama sampler of dx = [v - D(t) s] dt + sqrt(2 D(t)) dW (reverse
  time), whose marginals equal the ODE's for every diffusion coefficient D >= 0 (Ma et al.
  2024 eq. 7 with w_t = 2 D), then SiT's last step to t = 0.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from difftk.diffusion.grids import Grid, GridKind, axis_starts_clean, make_grid
from difftk.diffusion.levels import Levels
from difftk.diffusion.noise_source import randn_like
from difftk.diffusion.sampler import Sampler, report
from difftk.hookspecs import hookimpl


def path_times(grid: Grid):
    """The grid's path times t and rates (alpha', sigma') at each level (float64 lists)."""
    rate = grid.schedule.path_derivative(Levels(alpha=grid.alpha, sigma=grid.sigma))
    return rate.t.tolist(), rate.d_alpha.tolist(), rate.d_sigma.tolist()


class _PathState:
    """The model's answer at grid level i as the flow's quantities."""

    def __init__(self, model, grid: Grid, callback):
        self.model, self.grid, self.callback = model, grid, callback
        self.alpha, self.sigma = grid.alpha.tolist(), grid.sigma.tolist()
        self.t, self.d_alpha, self.d_sigma = path_times(grid)

    def answer(self, x, i: int, report_step: bool = True):
        """(x0_hat, eps_hat, velocity) at grid level i."""
        level = self.grid.level(i)
        x0 = self.model(x, level).x0.to(x.dtype)
        if report_step:
            report(self.callback, i, x, level, x0)
        eps = (x - self.alpha[i] * x0) / self.sigma[i]
        return x0, eps, self.d_alpha[i] * x0 + self.d_sigma[i] * eps


def flow_ode_sample(model, x, grid: Grid, *, heun: bool, callback=None) -> torch.Tensor:
    """Euler (heun False) or Heun steps of dx/dt = v from the grid's first level to t = 0.

    The last step, to sigma = 0, is an Euler step (NFE 2N - 1 for Heun, as EDM's sampler):
    there eps_hat is undefined for a model that answers x0, and the step needs no second
    slope (torchdiffeq's heun2 takes one more evaluation at t = 0).
    """
    state = _PathState(model, grid, callback)
    for i in range(grid.steps):
        dt = state.t[i + 1] - state.t[i]
        _, _, v = state.answer(x, i)
        x_next = x + dt * v
        if heun and state.sigma[i + 1] > 0:
            _, _, v_next = state.answer(x_next, i + 1, report_step=False)
            x_next = x + dt * 0.5 * (v + v_next)
        x = x_next
    return x


DiffusionForm = Literal["constant", "SBDM", "sigma", "linear", "decreasing",
                        "increasing-decreasing"]


def diffusion_coefficient(form: str, norm: float, t: float, alpha: float, sigma: float,
                          d_alpha: float, d_sigma: float) -> float:
    """SiT's D(t) (``path.compute_diffusion``, Ma et al. 2024 §3.2), in difftk's time t (SiT's
    1 - t). SBDM is the score-based model's g^2 / 2 = sigma sigma' - (alpha' / alpha) sigma^2,
    the choice that makes the SDE the reverse of the forward process (Song et al. 2021)."""
    if form == "constant":
        return norm
    if form == "SBDM":
        return norm * (sigma * d_sigma - (d_alpha / alpha) * sigma**2) if alpha > 0 else math.inf
    if form == "sigma":
        return norm * sigma
    if form == "linear":
        return norm * t
    if form == "decreasing":
        return 0.25 * (1.0 - norm * math.cos(math.pi * t)) ** 2
    if form == "increasing-decreasing":
        return norm * math.sin(math.pi * t) ** 2
    raise ValueError(f"unknown diffusion form {form!r}")


def flow_sde_sample(model, x, grid: Grid, generator, *, form: str, norm: float, last_step: str,
                    callback=None) -> torch.Tensor:
    """SiT's ``sample_sde`` (Euler-Maruyama): x <- x + (v - D s) dt + sqrt(2 D |dt|) z between
    the grid's noisy levels, then the last step from its last noisy level to t = 0:
    "mean" x + (v - D s) dt, "euler" x + v dt, "tweedie" x0_hat = (x + sigma^2 s) / alpha."""
    state = _PathState(model, grid, callback)
    last = grid.steps - 1
    for i in range(last):
        dt = state.t[i + 1] - state.t[i]
        _, eps, v = state.answer(x, i)
        score = -eps / state.sigma[i]
        d = diffusion_coefficient(form, norm, state.t[i], state.alpha[i], state.sigma[i],
                                  state.d_alpha[i], state.d_sigma[i])
        x = x + dt * (v - d * score) + math.sqrt(2.0 * d * abs(dt)) * randn_like(x, generator)
    x0, eps, v = state.answer(x, last)
    dt = state.t[last + 1] - state.t[last]
    if last_step == "tweedie":
        return x0
    if last_step == "euler":
        return x + dt * v
    d = diffusion_coefficient(form, norm, state.t[last], state.alpha[last], state.sigma[last],
                              state.d_alpha[last], state.d_sigma[last])
    return x + dt * (v + d * eps / state.sigma[last])  # "mean": v - D s with s = -eps / sigma


class _FlowSampler(Sampler):
    """A sampler stepping in the time of a path whose axis begins at the data (t = 0)."""

    grid: GridKind = Field("uniform_t", description="step grid (uniform_t: t = 1, 1 - 1/N, ..., "
                           "1/N as diffusers and SiT; see grids.py)")

    def check(self, parts):
        schedule = parts.get("schedule")
        if schedule is not None and not axis_starts_clean(schedule):
            return [("name", f"the {self.name} sampler integrates in the schedule's time down to "
                     f'noise level zero, which the "{schedule.name}" schedule\'s time axis never '
                     "reaches; use a flow schedule (rectified_flow, gvp) or the euler / heun "
                     "samplers, which step in EDM's sigma")]
        return []

    def solve(self, model, noise, grid, generator, callback=None):
        x = self.integrate(model, noise.to(torch.float64) * grid.sigma[0], grid, generator,
                           callback)
        return x / grid.alpha[-1]

    def integrate(self, model, x, grid, generator, callback):
        raise NotImplementedError


class FlowEuler(_FlowSampler):
    """Euler steps of the flow ODE dx/dt = v in the path's time (SiT ``ode`` "euler"; diffusers'
    FlowMatchEulerDiscreteScheduler); NFE = N. On rectified flow: DDIM and EDM's Euler."""

    name = "flow_euler"
    steps: int = Field(50, ge=1, le=100_000, description="number of noisy levels N (NFE = N)")

    def integrate(self, model, x, grid, generator, callback):
        return flow_ode_sample(model, x, grid, heun=False, callback=callback)


class FlowHeun(_FlowSampler):
    """Heun (trapezoid) steps of the flow ODE in the path's time (SiT ``ode`` "heun2");
    NFE = 2N - 1 (the step to t = 0 is Euler)."""

    name = "flow_heun"
    steps: int = Field(25, ge=1, le=100_000, description="number of noisy levels N "
                       "(NFE = 2N - 1)")

    def integrate(self, model, x, grid, generator, callback):
        return flow_ode_sample(model, x, grid, heun=True, callback=callback)


class FlowSDE(_FlowSampler):
    """SiT's SDE sampler: Euler-Maruyama of dx = [v - D s] dt + sqrt(2 D) dW with a choice of
    D(t), on N levels uniform in t from 1 to ``last_step_size``, then SiT's last step to
    t = 0 (Ma et al. 2024 §3.2, ``sample_sde`` defaults: D = sigma, "mean", 0.04); NFE = N."""

    name = "flow_sde"
    steps: int = Field(250, ge=2, le=100_000, description="number of noisy levels N (NFE = N; "
                       "SiT's num_sampling_steps)")
    diffusion_form: DiffusionForm = Field("sigma", description="D(t): constant, SBDM (the "
                                          "reverse SDE), sigma, linear, decreasing, "
                                          "increasing-decreasing (SiT's choices)")
    diffusion_norm: float = Field(1.0, ge=0, description="scale of D(t)")
    last_step: Literal["mean", "euler", "tweedie"] = Field(
        "mean", description="the step from t = last_step_size to 0: the SDE drift, the ODE "
        "velocity, or Tweedie's x0 estimate")
    last_step_size: float = Field(0.04, gt=0, lt=1, description="t of the last noisy level "
                                  "(on the schedule's axis)")
    start: float = Field(1.0, gt=0, le=1, description="t of the first level (SBDM needs "
                         "alpha > 0 there: below 1)")

    def check(self, parts):
        problems = super().check(parts)
        schedule = parts.get("schedule")
        if problems or schedule is None:
            return problems
        if self.grid != "uniform_t":
            return [("grid", "the flow_sde sampler steps uniformly in t from start to "
                     'last_step_size, as SiT does; keep grid = "uniform_t"')]
        if self.start <= self.last_step_size:
            return [("start", f"start ({self.start}) must lie above last_step_size "
                     f"({self.last_step_size})")]
        alpha, _ = schedule.alpha_sigma(torch.tensor([self.start], dtype=torch.float64))
        if self.diffusion_form == "SBDM" and float(alpha[0]) == 0:
            return [("start", "the SBDM diffusion coefficient is infinite where alpha = 0 (at "
                     f"t = {self.start}); start below 1, e.g. sampler.start = 0.999")]
        return []

    def noise_levels(self, schedule) -> Grid:
        times = torch.linspace(self.start, self.last_step_size, self.steps, dtype=torch.float64)
        uniform = make_grid("uniform_t", schedule, 1)  # for the clean end
        alpha, sigma = schedule.alpha_sigma(times)
        return Grid(alpha=torch.cat([alpha, uniform.alpha[-1:]]),
                    sigma=torch.cat([sigma, uniform.sigma[-1:]]),
                    sigma_edm=torch.cat([sigma / alpha, uniform.sigma_edm[-1:]]),
                    t=None, schedule=schedule)

    def integrate(self, model, x, grid, generator, callback):
        return flow_sde_sample(model, x, grid, generator, form=self.diffusion_form,
                               norm=self.diffusion_norm, last_step=self.last_step,
                               callback=callback)


@hookimpl
def register_samplers(register):
    for cls in (FlowEuler, FlowHeun, FlowSDE):
        register(cls)
