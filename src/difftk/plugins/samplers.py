"""Built-in samplers, each a plain function of (model, x, grid) behind its component; the model
is called as ``model(x_t, level)`` (diffusion/sampler.py) and each step is reported to
``callback``.

- euler, heun: Karras et al. 2022 Algorithms 1-2 (with churn) in EDM's sigma.
- euler_ancestral: k-diffusion's ``sample_euler_ancestral`` (Euler step to sigma_down,
  then fresh noise of std sigma_up).
- dpmpp_2m: DPM-Solver++(2M), Lu et al. 2022 Algorithm 2, in (alpha, sigma) with
  lambda = log(alpha / sigma).
- ddim: Song et al. 2021 eq. 12 with eta, written in (alpha, sigma).
- ddpm: ancestral sampling through the posterior q(x_s | x_t, x0) (Ho et al. 2020;
  seed 004 Coding I.8 and II.2) with fixed small, fixed large or learned variance
  (seed 003 §3, ch. 6), on all T steps or a respaced subset (Nichol & Dhariwal 2021).

The two (alpha, sigma) relations every x_t-space step uses, for a step from level t to
an earlier level s (Kingma et al. 2021, eq. 22-25): alpha_ts = alpha_t / alpha_s,
var_ts = sigma_t^2 - alpha_ts^2 sigma_s^2 (DDPM's beta of the step), and
q(x_s | x_t, x0) = N(alpha_ts sigma_s^2 / sigma_t^2 x_t + alpha_s var_ts / sigma_t^2 x0,
var_ts sigma_s^2 / sigma_t^2). For a table schedule these are seed 004 Theory II's
coefficients with beta_t = 1 - alpha_bar_t / alpha_bar_s, so respacing is automatic.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field

from difftk.diffusion.grids import Grid, GridKind
from difftk.diffusion.noise_source import randn_like
from difftk.diffusion.sampler import Sampler, SigmaGridSampler, finite_sigmas, report
from difftk.hookspecs import hookimpl


def _randn(x: torch.Tensor, generator) -> torch.Tensor:
    return randn_like(x, generator)  # one stream for the batch, or one per sample


# ---------------------------------------------------------------- EDM coordinates
def _denoise_edm(model, grid: Grid, x, sigma_edm: float, t: float | None, i: int, callback):
    """D(x; sigma) for x = x_t / alpha (Karras et al. 2022) through the model protocol: the
    level is the schedule's at ``sigma_edm``, with the grid's time t where it knows it."""
    level = grid.level_at_sigma_edm(sigma_edm, t)
    x_t = level.alpha * x
    denoised = model(x_t, level).x0.to(x.dtype)
    report(callback, i, x_t, level, denoised)
    return denoised


def edm_sample(model, x, grid: Grid, generator, *, heun: bool, s_churn: float, s_tmin: float,
               s_tmax: float, s_noise: float, callback=None) -> torch.Tensor:
    """Karras et al. 2022 Algorithm 2 (Algorithm 1's Euler step when heun is False).

    x = x_t / alpha starts at the grid's first EDM sigma and ends at sigma = 0, where it is
    x0. The last step, to sigma = 0, is an Euler step (NFE = 2N - 1 for Heun). A step is
    reported with its first evaluation (at sigma_hat after churn).
    """
    sigmas = finite_sigmas(grid).tolist()
    times = None if grid.t is None else grid.t.tolist()
    n = len(sigmas) - 1
    for i in range(n):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s_cur <= s_tmax else 0.0
        s_hat = s_cur * (1 + gamma)
        t_hat = None if gamma > 0 or times is None else times[i]
        if gamma > 0:
            x = x + math.sqrt(s_hat**2 - s_cur**2) * s_noise * _randn(x, generator)
        d = (x - _denoise_edm(model, grid, x, s_hat, t_hat, i, callback)) / s_hat
        x_next = x + (s_next - s_hat) * d
        if heun and s_next > 0:
            t_next = None if times is None else times[i + 1]
            d_next = (x_next - _denoise_edm(model, grid, x_next, s_next, t_next, i, None)
                      ) / s_next
            x_next = x + (s_next - s_hat) * 0.5 * (d + d_next)
        x = x_next
    return x


def ancestral_step(s_from: float, s_to: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up) of k-diffusion's ``get_ancestral_step``: the DDPM posterior
    noise eta^2 s_to^2 (s_from^2 - s_to^2) / s_from^2, capped at s_to."""
    if eta == 0 or s_to == 0:
        return s_to, 0.0
    s_up = min(s_to, eta * math.sqrt(s_to**2 * (s_from**2 - s_to**2) / s_from**2))
    return math.sqrt(s_to**2 - s_up**2), s_up


def euler_ancestral_sample(model, x, grid: Grid, generator, *, eta: float, s_noise: float,
                           callback=None) -> torch.Tensor:
    """k-diffusion ``sample_euler_ancestral``: Euler to sigma_down, then add sigma_up noise."""
    sigmas = finite_sigmas(grid).tolist()
    times = None if grid.t is None else grid.t.tolist()
    for i in range(len(sigmas) - 1):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise_edm(model, grid, x, s_cur, None if times is None else times[i], i,
                                callback)
        s_down, s_up = ancestral_step(s_cur, s_next, eta)
        x = x + (s_down - s_cur) * (x - denoised) / s_cur
        if s_up > 0:
            x = x + _randn(x, generator) * s_noise * s_up
    return x


class _EDMCoordinates(SigmaGridSampler):
    """A sampler that steps in EDM's x = x_t / alpha and sigma_edm."""

    def solve(self, model, noise, grid, generator, callback=None):
        x = noise.to(torch.float64) * finite_sigmas(grid)[0]
        return self.integrate(model, x, grid, generator, callback)  # x = x0 at sigma = 0

    def integrate(self, model, x, grid, generator, callback):
        raise NotImplementedError


class _EDMSampler(_EDMCoordinates):
    S_churn: float = Field(0.0, ge=0, description="total stochasticity added")
    S_tmin: float = Field(0.0, ge=0, description="churn only for sigma >= S_tmin")
    S_tmax: float = Field(math.inf, ge=0, allow_inf_nan=True, description="churn only for sigma <= S_tmax")
    S_noise: float = Field(1.0, gt=0, description="scale of the churn noise")

    heun: ClassVar[bool] = True

    def integrate(self, model, x, grid, generator, callback):
        return edm_sample(model, x, grid, generator, heun=self.heun, s_churn=self.S_churn,
                          s_tmin=self.S_tmin, s_tmax=self.S_tmax, s_noise=self.S_noise,
                          callback=callback)


class Heun(_EDMSampler):
    """EDM's 2nd-order Heun sampler with churn (Karras et al. 2022, Alg. 2); NFE = 2N - 1."""

    name = "heun"


class Euler(_EDMSampler):
    """EDM's 1st-order Euler sampler with churn (Karras et al. 2022, Alg. 1-2); NFE = N."""

    name = "euler"
    heun: ClassVar[bool] = False


class EulerAncestral(_EDMCoordinates):
    """Euler ancestral: an Euler step to sigma_down plus fresh noise sigma_up (k-diffusion)."""

    name = "euler_ancestral"
    eta: float = Field(1.0, ge=0, le=1, description="share of the posterior noise re-injected "
                       "(0: the Euler ODE sampler)")
    S_noise: float = Field(1.0, gt=0, description="scale of the injected noise")

    def integrate(self, model, x, grid, generator, callback):
        return euler_ancestral_sample(model, x, grid, generator, eta=self.eta,
                                      s_noise=self.S_noise, callback=callback)


# ---------------------------------------------------------------- (alpha, sigma) coordinates
def dpmpp_2m_sample(model, x, grid: Grid, callback=None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2; k-diffusion ``sample_dpmpp_2m``).

    x_{i+1} = (sigma_{i+1} / sigma_i) x_i + alpha_{i+1} (1 - e^{-h}) D, h = lambda_{i+1} -
    lambda_i, D = (1 + 1/2r) D_i - (1/2r) D_{i-1} with r = h_{i-1} / h; first order on the
    first step and on the last one (to sigma = 0, where h is infinite). alpha = 0 at the
    start (zero terminal SNR) gives lambda = -inf, h = inf: a clean first-order step.
    """
    alpha, sigma = grid.alpha.tolist(), grid.sigma.tolist()
    lam = [math.log(a) - math.log(s) if a > 0 and s > 0 else (math.inf if s == 0 else -math.inf)
           for a, s in zip(alpha, sigma, strict=True)]
    old, h_last = None, None
    for i in range(grid.steps):
        level = grid.level(i)
        denoised = model(x, level).x0
        report(callback, i, x, level, denoised)
        h = lam[i + 1] - lam[i]
        phi = -math.expm1(-h)  # 1 - e^{-h}, exactly 1 when h is infinite
        if old is None or sigma[i + 1] == 0:
            d = denoised
        else:
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old
        x = (sigma[i + 1] / sigma[i]) * x + alpha[i + 1] * phi * d
        old, h_last = denoised, h
    return x


def _step_variances(a: float, s: float, a_n: float, s_n: float) -> tuple[float, float, float]:
    """(alpha_ts, var_ts, posterior variance) for a step from (a, s) to (a_n, s_n)."""
    a_ts = a / a_n
    var_ts = max(s**2 - a_ts**2 * s_n**2, 0.0)
    return a_ts, var_ts, var_ts * s_n**2 / s**2


def ddim_sample(model, x, grid: Grid, generator, *, eta: float, clip: bool,
                callback=None) -> torch.Tensor:
    """Song et al. 2021 eq. 12: x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z with
    c = eta sqrt(posterior variance) (eq. 16); eta = 1 is ancestral DDPM, 0 deterministic.
    eps is re-derived from the (possibly clipped) x0, as improved-diffusion does."""
    alpha, sigma = grid.alpha.tolist(), grid.sigma.tolist()
    for i in range(grid.steps):
        a, s, a_n, s_n = alpha[i], sigma[i], alpha[i + 1], sigma[i + 1]
        level = grid.level(i)
        x0 = model(x, level).x0
        if clip:
            x0 = model.clip(x0)
        report(callback, i, x, level, x0)
        eps = (x - a * x0) / s
        c = eta * math.sqrt(_step_variances(a, s, a_n, s_n)[2])
        x = a_n * x0 + math.sqrt(max(s_n**2 - c**2, 0.0)) * eps
        if c > 0:
            x = x + c * _randn(x, generator)
    return x


def ddpm_sample(model, x, grid: Grid, generator, *, clip: bool, callback=None) -> torch.Tensor:
    """Ancestral sampling x_s ~ N(mu(x_t, x0_hat), var) step by step (Ho et al. 2020 Alg. 2;
    seed 004 Coding II.2). The model's answer picks var from the step's beta = var_ts and
    beta_tilde = the posterior variance (fixed large, fixed small) or from the network's
    extra channels (learned, seed 003 ch. 6); respaced steps use the respaced pair."""
    alpha, sigma = grid.alpha.tolist(), grid.sigma.tolist()
    for i in range(grid.steps):
        a, s, a_n, s_n = alpha[i], sigma[i], alpha[i + 1], sigma[i + 1]
        level = grid.level(i)
        out = model(x, level)
        x0 = model.clip(out.x0) if clip else out.x0
        report(callback, i, x, level, x0)
        a_ts, var_ts, post_var = _step_variances(a, s, a_n, s_n)
        mean = (a_n * var_ts / s**2) * x0 + (a_ts * s_n**2 / s**2) * x
        if s_n == 0:
            x = mean
            continue
        beta = torch.tensor(var_ts, dtype=torch.float64)
        beta_tilde = torch.tensor(post_var, dtype=torch.float64)
        log_var = out.log_variance(beta, beta_tilde).to(device=x.device, dtype=x.dtype)
        x = mean + torch.exp(0.5 * log_var) * _randn(x, generator)
    return x


class DPMpp2M(SigmaGridSampler):
    """DPM-Solver++(2M): multistep 2nd-order solver in log-SNR (Lu et al. 2022, Alg. 2)."""

    name = "dpmpp_2m"
    steps: int = Field(20, ge=1, le=100_000, description="number of noisy levels N (NFE = N)")

    def solve(self, model, noise, grid, generator, callback=None):
        x = dpmpp_2m_sample(model, noise.to(torch.float64) * grid.sigma[0], grid, callback)
        return x / grid.alpha[-1]  # x_t = alpha x0 at the clean end


class DDIM(Sampler):
    """DDIM with eta in [0, 1] (Song et al. 2021): deterministic at 0, ancestral DDPM at 1."""

    name = "ddim"
    steps: int = Field(50, ge=1, le=100_000, description="number of noisy levels (NFE)")
    grid: GridKind = Field("linspace", description="step grid (see grids.py)")
    eta: float = Field(0.0, ge=0, le=1, description="share of the posterior noise injected")
    clip_denoised: bool = Field(False, description="clamp the x0 estimate to the data's pixel "
                                "range ([-1, 1] for mean = std = 0.5)")

    def solve(self, model, noise, grid, generator, callback=None):
        x = ddim_sample(model, noise.to(torch.float64) * grid.sigma[0], grid, generator,
                        eta=self.eta, clip=self.clip_denoised, callback=callback)
        return x / grid.alpha[-1]


class DDPM(Sampler):
    """Ancestral sampling through the schedule's table (Ho et al. 2020) with fixed or learned
    variance, on all T steps or a respaced subset (Nichol & Dhariwal 2021)."""

    name = "ddpm"
    needs_table = "steps through"
    steps: int = Field(0, ge=0, le=100_000, description="number of steps; 0 uses all T")
    grid: GridKind = Field("linspace", description="step grid (see grids.py)")
    clip_denoised: bool = Field(False, description="clamp the x0 estimate to the data's pixel "
                                "range ([-1, 1] for mean = std = 0.5)")

    def num_levels(self, schedule) -> int:
        return self.steps or schedule.num_steps

    def solve(self, model, noise, grid, generator, callback=None):
        x = ddpm_sample(model, noise.to(torch.float64) * grid.sigma[0], grid, generator,
                        clip=self.clip_denoised, callback=callback)
        return x / grid.alpha[-1]


@hookimpl
def register_samplers(register):
    for cls in (Heun, Euler, EulerAncestral, DPMpp2M, DDIM, DDPM):
        register(cls)
