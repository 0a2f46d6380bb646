"""Built-in samplers: EDM's Euler/Heun (Karras et al. 2022, Algorithms 1-2) and DDPM's
ancestral sampler (Ho et al. 2020; seed 004 Coding I.8), with respacing (Nichol &
Dhariwal 2021)."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from pydantic import Field

from difftk.diffusion.grids import karras_sigmas
from difftk.diffusion.sampler import Sampler, SampleResult
from difftk.hookspecs import hookimpl


def edm_sample(denoise, x, sigmas, generator, *, heun: bool, s_churn: float, s_tmin: float,
               s_tmax: float, s_noise: float) -> tuple[torch.Tensor, int]:
    """EDM Algorithm 2 (Algorithm 1 when heun is False) on a decreasing grid ending in 0.

    ``denoise(x, sigma)`` is D(x; sigma). Returns the sample and the number of
    network evaluations.
    """
    n = len(sigmas) - 1
    nfe = 0
    for i in range(n):
        s_cur, s_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= s_cur <= s_tmax else 0.0
        s_hat = s_cur * (1 + gamma)
        if gamma > 0:
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + math.sqrt(s_hat**2 - s_cur**2) * s_noise * z
        d = (x - denoise(x, s_hat)) / s_hat
        nfe += 1
        x_next = x + (s_next - s_hat) * d
        if heun and s_next > 0:
            d_next = (x_next - denoise(x_next, s_next)) / s_next
            nfe += 1
            x_next = x + (s_next - s_hat) * 0.5 * (d + d_next)
        x = x_next
    return x, nfe


class _EDMSampler(Sampler):
    steps: int = Field(18, ge=1, description="number of noise levels N (NFE = 2N - 1 for heun)")
    sigma_min: float = Field(0.002, gt=0, description="smallest nonzero noise level")
    sigma_max: float = Field(80.0, gt=0, description="starting noise level")
    rho: float = Field(7.0, gt=0, description="Karras grid exponent")
    S_churn: float = Field(0.0, ge=0, description="total stochasticity added")
    S_tmin: float = Field(0.0, ge=0, description="churn only for sigma >= S_tmin")
    S_tmax: float = Field(math.inf, ge=0, description="churn only for sigma <= S_tmax")
    S_noise: float = Field(1.0, gt=0, description="scale of the churn noise")

    heun: ClassVar[bool] = True

    def grid(self, schedule) -> torch.Tensor:
        lo, hi = schedule.sigma_edm_range()
        return karras_sigmas(self.steps, max(self.sigma_min, lo), min(self.sigma_max, hi),
                             self.rho)

    @torch.no_grad()
    def sample(self, denoiser, noise, generator, labels=None):
        sigmas = self.grid(denoiser.schedule)
        x = noise.to(torch.float64) * sigmas[0]

        def denoise(x, s):
            return denoiser.edm(x, torch.tensor([s], dtype=torch.float64, device=x.device),
                                labels)

        x, nfe = edm_sample(denoise, x, sigmas, generator, heun=self.heun, s_churn=self.S_churn,
                            s_tmin=self.S_tmin, s_tmax=self.S_tmax, s_noise=self.S_noise)
        return SampleResult(x.float(), nfe)


class Heun(_EDMSampler):
    """EDM's 2nd-order Heun sampler with churn on the Karras rho grid (Karras et al. 2022, Alg. 2)."""

    name = "heun"


class Euler(_EDMSampler):
    """EDM's 1st-order Euler sampler with churn on the Karras rho grid (Karras et al. 2022)."""

    name = "euler"
    heun: ClassVar[bool] = False


class DDPM(Sampler):
    """Ancestral sampling x_{t-1} ~ N(mu_theta, var) through the schedule's table (Ho et al. 2020),
    optionally on an evenly respaced subset of the T steps (Nichol & Dhariwal 2021)."""

    name = "ddpm"
    requires_table = True
    steps: int = Field(0, ge=0, description="number of steps; 0 uses all T")
    clip_denoised: bool = Field(False, description="clamp the x0 estimate to [-1, 1]")

    def timesteps(self, T: int) -> torch.Tensor:
        n = T if self.steps in (0, T) else min(self.steps, T)
        return torch.linspace(1, T, n, dtype=torch.float64).round().long().unique()

    @torch.no_grad()
    def sample(self, denoiser, noise, generator, labels=None):
        schedule = denoiser.schedule
        ab_table = schedule.table["alpha_bar"]
        ts = self.timesteps(schedule.num_steps).tolist()
        x = noise.float()
        for k in range(len(ts) - 1, -1, -1):
            t, t_prev = ts[k], (ts[k - 1] if k > 0 else 0)
            ab, ab_prev = float(ab_table[t]), float(ab_table[t_prev])
            levels = schedule.levels_at(torch.full((x.shape[0],), t, device=x.device))
            x0, extra = denoiser.x0_and_extra(x, levels, labels)
            if self.clip_denoised:
                x0 = x0.clamp(-1, 1)
            # The respaced step's beta and posterior (seed 004 Theory II).
            beta = 1.0 - ab / ab_prev
            c_x0 = math.sqrt(ab_prev) * beta / (1 - ab)
            c_xt = math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab)
            mean = c_x0 * x0 + c_xt * x
            if t_prev > 0:
                beta_t = torch.tensor(beta, dtype=torch.float64)
                beta_tilde = beta_t * (1 - ab_prev) / (1 - ab)
                log_var = denoiser.variance.log_variance(beta_t, beta_tilde, extra)
                log_var = log_var.to(x.device).float()
                if log_var.dim() > 0:
                    log_var = log_var.expand_as(x) if log_var.shape != x.shape else log_var
                z = torch.randn(x.shape, generator=generator, device=x.device)
                x = mean + torch.exp(0.5 * log_var) * z
            else:
                x = mean
        return SampleResult(x, len(ts))


@hookimpl
def register_samplers(register):
    for cls in (Heun, Euler, DDPM):
        register(cls)


