"""Built-in noise schedules (seed 001 §6.2, §6.3, §8.1.1; seed 003 §1.2-1.3; seed 004 Theory II;
flow paths: Liu et al. 2023, Ma et al. 2024).

t-space schedules give their betas exactly as seed 001 §6.3 writes them, for t = 1..T;
``DiscreteSchedule`` adds zero terminal SNR and the T' rescaling to each. Sigma-space
schedules give EDM's sigma over u in [0, 1] and the scale s(sigma) = alpha.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field, model_validator
from torch import Tensor

from difftk.diffusion.flow_schedule import FlowSchedule
from difftk.diffusion.levels import SigmaRange
from difftk.diffusion.schedule import DiscreteSchedule, SigmaSchedule
from difftk.hookspecs import hookimpl


def _ramp(T: int) -> Tensor:
    """(t - 1) / (T - 1) for t = 1..T, in float64."""
    return torch.linspace(0.0, 1.0, T, dtype=torch.float64)


class _BetaRange(DiscreteSchedule):
    beta_start: float = Field(1e-4, gt=0, lt=1, description="beta_1 (beta_min)")
    beta_end: float = Field(0.02, gt=0, lt=1, description="beta_T (beta_max)")

    @model_validator(mode="before")
    @classmethod
    def _ordered(cls, data):
        if isinstance(data, dict):
            lo = data.get("beta_start", cls.model_fields["beta_start"].default)
            hi = data.get("beta_end", cls.model_fields["beta_end"].default)
            if isinstance(lo, int | float) and isinstance(hi, int | float) and lo > hi:
                raise ValueError("beta_start must not exceed beta_end")
        return data


class Linear(_BetaRange):
    """DDPM's linear betas from beta_start to beta_end over T steps (Ho et al. 2020; seed 001 §6.3)."""

    name = "linear"

    def base_betas(self, T, scale):
        # beta_t = beta_min + (t - 1) (beta_max - beta_min) / (T - 1)
        lo, hi = self.beta_start * scale, self.beta_end * scale
        return lo + _ramp(T) * (hi - lo)


class ScaledLinear(_BetaRange):
    """Latent diffusion's betas, linear in sqrt(beta) from 0.00085 to 0.012 (seed 001 §6.3)."""

    name = "scaled_linear"
    beta_start: float = Field(0.00085, gt=0, lt=1, description="beta_1 (beta_min)")
    beta_end: float = Field(0.012, gt=0, lt=1, description="beta_T (beta_max)")

    def base_betas(self, T, scale):
        # beta_t = (sqrt(beta_min) + (t - 1) (sqrt(beta_max) - sqrt(beta_min)) / (T - 1))^2
        lo, hi = math.sqrt(self.beta_start * scale), math.sqrt(self.beta_end * scale)
        return (lo + _ramp(T) * (hi - lo)) ** 2


class Exponential(_BetaRange):
    """Betas growing geometrically from beta_start to beta_end (seed 001 §6.3)."""

    name = "exponential"

    def base_betas(self, T, scale):
        # beta_t = beta_start (beta_end / beta_start)^((t - 1) / (T - 1))
        return self.beta_start * scale * (self.beta_end / self.beta_start) ** _ramp(T)


class Sigmoid(_BetaRange):
    """GeoDiff's S-shaped betas: a logistic ramp over [-6, 6] between beta_start and beta_end
    (seed 001 §6.3)."""

    name = "sigmoid"
    sigmoid_start: float = Field(-6.0, description="logistic argument at t = 1")
    sigmoid_end: float = Field(6.0, description="logistic argument at t = T")

    def base_betas(self, T, scale):
        # beta_t = sigmoid(-6 + 12 (t - 1) / (T - 1)) (beta_end - beta_start) + beta_start;
        # so beta_1 and beta_T are not exactly beta_start and beta_end (diffusers agrees).
        x = self.sigmoid_start + _ramp(T) * (self.sigmoid_end - self.sigmoid_start)
        lo, hi = self.beta_start * scale, self.beta_end * scale
        return torch.sigmoid(x) * (hi - lo) + lo


class Cosine(DiscreteSchedule):
    """iDDPM's squaredcos_cap_v2: alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), betas capped
    at 0.999 (Nichol & Dhariwal 2021; seed 001 §6.3)."""

    name = "cosine"
    s: float = Field(0.008, ge=0, description="offset that keeps beta_1 from being tiny")
    max_beta: float = Field(0.999, gt=0, lt=1, description="cap on each beta")

    def _alpha_bar_fn(self, x: Tensor) -> Tensor:
        return torch.cos((x + self.s) / (1 + self.s) * math.pi / 2) ** 2

    def base_betas(self, T, scale):
        # beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), beta_max). alpha_bar is a function
        # of t / T, so the profile is already the same for every T: the T' rescaling just
        # changes T and ``scale`` is not used.
        t = torch.arange(1, T + 1, dtype=torch.float64)
        ratio = self._alpha_bar_fn(t / T) / self._alpha_bar_fn((t - 1) / T)
        return (1.0 - ratio).clamp(max=self.max_beta)


class _SigmaRange(SigmaSchedule, SigmaRange):
    """A variance-exploding sigma-space schedule on [sigma_min, sigma_max]."""

    variance_preserving: ClassVar[bool] = False


class EDM(_SigmaRange):
    """EDM's schedule sigma(t) = t, s(t) = 1 on [sigma_min, sigma_max] (Karras et al. 2022)."""

    name = "edm"

    def sigma_at(self, u):
        return self.sigma_min + u * (self.sigma_max - self.sigma_min)

    def u_from_sigma(self, sigma_edm):
        return (sigma_edm - self.sigma_min) / (self.sigma_max - self.sigma_min)

    def sigma_edm_range(self):
        return self.sigma_min, self.sigma_max


class LinearSigma(EDM):
    """sigma = sigma_min + u (sigma_max - sigma_min), s = 1: uniform u gives uniform sigma
    (seed 001 §6.2, example 1)."""

    name = "linear_sigma"


class LogLinear(_SigmaRange):
    """sigma = sigma_min (sigma_max / sigma_min)^u, s = 1: uniform u gives log-uniform sigma
    (seed 001 §6.2, example 2)."""

    name = "log_linear"

    def sigma_at(self, u):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** u

    def u_from_sigma(self, sigma_edm):
        return torch.log(sigma_edm / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)


class VE(_SigmaRange):
    """Variance exploding: x = x0 + N(0, t), the variance t growing linearly from sigma_min^2
    to sigma_max^2, s = 1 (seed 003 §1.2, eq. 1.7; Song et al. 2021)."""

    name = "ve"
    sigma_min: float = Field(0.02, gt=0, description="smallest EDM sigma")
    sigma_max: float = Field(100.0, gt=0, description="largest EDM sigma")

    def sigma_at(self, u):
        # Var[x_t] = Var[x0] + t (seed 003 eq. 1.9): sigma = sqrt(t), t linear in u.
        return (self.sigma_min**2 + u * (self.sigma_max**2 - self.sigma_min**2)).sqrt()

    def u_from_sigma(self, sigma_edm):
        return (sigma_edm**2 - self.sigma_min**2) / (self.sigma_max**2 - self.sigma_min**2)


class VP(SigmaSchedule):
    """The continuous variance-preserving schedule sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1),
    s = 1 / sqrt(1 + sigma^2), t in [epsilon_t, 1] (Song et al. 2021, as in Karras et al. 2022)."""

    name = "vp"
    beta_min: float = Field(0.1, gt=0, description="beta(0)")
    beta_d: float = Field(19.9, gt=0, description="beta(1) - beta(0)")
    epsilon_t: float = Field(1e-5, gt=0, lt=1, description="smallest t (u = 0)")

    def _t(self, u: Tensor) -> Tensor:
        return self.epsilon_t + u * (1 - self.epsilon_t)

    def sigma_at(self, u):
        t = self._t(u)
        return torch.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t).sqrt()

    def u_from_sigma(self, sigma_edm):
        # EDM's VPPrecond.sigma_inv: t = (sqrt(beta_min^2 + 2 beta_d ln(1 + sigma^2)) - beta_min) / beta_d
        t = ((self.beta_min**2 + 2 * self.beta_d * torch.log1p(sigma_edm**2)).sqrt()
             - self.beta_min) / self.beta_d
        return (t - self.epsilon_t) / (1 - self.epsilon_t)

    def scale(self, sigma_edm):
        return torch.rsqrt(1.0 + sigma_edm**2)


class RectifiedFlow(FlowSchedule):
    """The linear path alpha = 1 - t, sigma = t (rectified flow, Liu et al. 2023; Lipman et al.
    2023's optimal-transport path; SiT's "Linear"; SD3 with ``shift``). Its velocity
    d x_t / dt is eps - x0 and its EDM sigma t / (1 - t)."""

    name = "rectified_flow"

    def path(self, t):
        return 1.0 - t, t

    def path_rates(self, t):
        return -torch.ones_like(t), torch.ones_like(t)

    def path_time(self, alpha, sigma):
        # t = sigma / (alpha + sigma), written so sigma = inf (alpha = 0) gives exactly 1.
        return 1.0 / (1.0 + alpha / sigma)


class GVP(FlowSchedule):
    """SiT's generalised variance-preserving path alpha = cos(pi t / 2), sigma = sin(pi t / 2)
    (Ma et al. 2024, Table 1 "GVP"; the trigonometric interpolant of Albergo &
    Vanden-Eijnden 2023): alpha^2 + sigma^2 = 1, the cosine schedule of Nichol & Dhariwal
    without its offset, in continuous time."""

    name = "gvp"
    variance_preserving: ClassVar[bool] = True

    def path(self, t):
        # sin of the complement, so alpha is exactly 0 at t = 1 (cos(pi / 2) is 6e-17).
        return torch.sin(0.5 * math.pi * (1.0 - t)), torch.sin(0.5 * math.pi * t)

    def path_rates(self, t):
        half_pi = 0.5 * math.pi
        return -half_pi * torch.sin(half_pi * t), half_pi * torch.cos(half_pi * t)

    def path_time(self, alpha, sigma):
        return torch.atan2(sigma, alpha) / (0.5 * math.pi)


@hookimpl
def register_schedules(register):
    for cls in (Linear, ScaledLinear, Cosine, Exponential, Sigmoid, EDM, VP, VE, LogLinear,
                LinearSigma, RectifiedFlow, GVP):
        register(cls)
