"""Built-in prediction targets (seed 000 §2, seed 001 §2 and §8.1, seed 003 ch. 4-5).

Each target is T = a x0 + b eps with (a, b) a function of (alpha, sigma), or, for the
posterior mean, of the step t -> t - 1 of the schedule's table.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field

from difftk.diffusion.levels import LOG_SNR_MIN, SIGMA_DATA_HELP, Levels, SigmaData
from difftk.diffusion.target import TARGET_COEFFICIENTS, Preconditioning, Target
from difftk.hookspecs import hookimpl


class _Plain(Target):
    def coefficients(self, levels: Levels):
        return TARGET_COEFFICIENTS[self.name](levels.alpha, levels.sigma)


class X0(_Plain):
    """Predict the clean data x0 (seed 000 §2.1)."""

    name = "x0"


class Eps(_Plain):
    """Predict the noise eps (Ho et al. 2020; seed 000 §2.2)."""

    name = "eps"

    def check(self, parts):
        schedule = parts.get("schedule")
        if schedule is not None and math.isinf(schedule.sigma_edm_range()[1]):
            return [("name", "eps-prediction cannot recover x0 where the schedule reaches zero "
                     "terminal SNR (alpha = 0 there, and x0 = (x_t - sigma eps) / alpha); "
                     "use v or x0 prediction")]
        return []


class V(_Plain):
    """Predict the velocity v = alpha eps - sigma x0 (Salimans & Ho 2022; seed 000 §2.3)."""

    name = "v"


class Score(_Plain):
    """Predict the score -eps / sigma (Song et al. 2021; seed 000 §2.4)."""

    name = "score"


class Velocity(Target):
    """Predict the flow velocity d x_t / dt = alpha'(t) x0 + sigma'(t) eps of the bound
    schedule's path (Lipman et al. 2023 eq. 20; Liu et al. 2023; SiT's "velocity", Ma et al.
    2024 eq. 2): eps - x0 on the rectified-flow path, (pi / 2) v on SiT's GVP path.

    The time is the path's own (``Schedule.path_derivative``): for flow schedules the path
    time after the shift, so a shifted rectified flow still regresses eps - x0, as SD3 does;
    on other schedules the derivative along their time axis. The x0 error factor on the
    rectified-flow path is 1 / t^2.
    """

    name = "velocity"

    def coefficients(self, levels: Levels):
        if self._schedule is None:
            raise ValueError("the velocity target is the derivative along the schedule's path: "
                             "bind it to the schedule first (Target.bind)")
        rate = self._schedule.path_derivative(levels)
        like = levels.alpha
        return rate.d_alpha.to(like.device, like.dtype), rate.d_sigma.to(like.device, like.dtype)


class Mean(Target):
    """Predict the posterior mean mu of q(x_{t-1} | x_t, x0) directly (seed 003 ch. 4
    "direct mean", seed 004 Coding I); t-space schedules only.

    mu = c_x0 x0 + c_xt x_t = (c_x0 + c_xt alpha) x0 + c_xt sigma eps with the posterior
    coefficients of the bound schedule at t (seed 004 Theory II.1), so mu_hat converts to
    x0_hat = (mu_hat - c_xt x_t) / c_x0 and then to every other form. The x0 error factor
    is c_x0^2: seed 003 eq. 5.3's C_0^2. Below t = 1 (a sampler's fractional levels) the
    first step stands in.
    """

    name = "mean"

    def coefficients(self, levels: Levels):
        from difftk.diffusion.vlb import posterior

        post = posterior(self._require_table(), self.times(levels))
        c_x0 = post.c_x0.to(levels.alpha.device, levels.alpha.dtype)
        c_xt = post.c_xt.to(levels.alpha.device, levels.alpha.dtype)
        return c_x0 + c_xt * levels.alpha, c_xt * levels.sigma

    needs_table = "regresses the posterior mean of a step t -> t - 1 of"


class EDMPrecond(Target):
    """EDM preconditioning F = c_skip x + c_out f(c_in x, c_noise) of any target
    (Karras et al. 2022; seed 001 §8.1).

    All four coefficients follow one principle, applied to T = a x0 + b eps with
    Var(x0) = sigma_data^2: c_skip x is the best linear estimate of T from x,
    c_out^2 = Var(T - c_skip x) makes f's regression target unit-variance, and
    c_in^2 = 1 / Var(x). For x0 this is the seed's first row; for eps and score it
    reproduces the seed's rows too. For v the seed's row (c_skip = 0, c_out = 1) does not
    follow the principle; we use the principle.
    """

    name = "edm"
    sigma_data: SigmaData = Field("data", description=SIGMA_DATA_HELP)
    predict: Literal["x0", "eps", "v", "score"] = Field(
        "x0", description="the target F estimates")

    def _sd(self) -> float:
        if self.sigma_data == "data":
            raise RuntimeError("sigma_data must be resolved before use")
        return float(self.sigma_data)

    def coefficients(self, levels):
        return TARGET_COEFFICIENTS[self.predict](levels.alpha, levels.sigma)

    def scalings(self, levels: Levels):
        """(c_skip, c_out, c_in, c_noise) in x_t coordinates, each [B], in float64."""
        alpha, sigma = levels.alpha.double(), levels.sigma.double()
        a, b = (c.double() for c in TARGET_COEFFICIENTS[self.predict](alpha, sigma))
        sd2 = self._sd() ** 2
        var_x = alpha**2 * sd2 + sigma**2
        c_skip = (a * alpha * sd2 + b * sigma) / var_x
        c_out = (a**2 * sd2 + b**2 - c_skip**2 * var_x).clamp(min=0).sqrt()
        c_in = var_x.rsqrt()
        # c_noise = ln(sigma_edm) / 4; at alpha = 0 logSNR is floored so it stays finite.
        log_snr = (2 * (torch.log(alpha) - torch.log(sigma))).clamp(min=LOG_SNR_MIN)
        c_noise = -0.125 * log_snr
        return c_skip, c_out, c_in, c_noise

    def output_scale(self, levels: Levels):
        return self.scalings(levels)[1]

    def preconditioning(self, levels: Levels) -> Preconditioning:
        c_skip, c_out, c_in, c_noise = self.scalings(levels)
        # c_noise in the levels' dtype: float32, or float64 for a float64 model
        return Preconditioning(noise=c_noise.to(levels.sigma.dtype), c_in=c_in, c_skip=c_skip,
                               c_out=c_out)


@hookimpl
def register_targets(register):
    for cls in (X0, Eps, V, Score, Velocity, Mean, EDMPrecond):
        register(cls)
