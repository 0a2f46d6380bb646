"""Forward processes: the base class and the two kinds DESIGN.md describes.

A t-space schedule (``DiscreteSchedule``) keeps a table of T levels alpha_bar_t,
t = 1..T, its posterior q(x_{t-1} | x_t, x0) and the map from a noise level to the
(fractional) t a network trained on t takes. A sigma-space schedule
(``SigmaSchedule``, EDM's view, seed 001 §8.1.1) maps EDM's sigma to (alpha, sigma)
through a scale s: x = s (x0 + sigma_edm eps).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import ClassVar

import torch
from torch import Tensor

from difftk.component import Component
from difftk.diffusion.levels import Levels


class Schedule(Component):
    """A forward process t -> (alpha, sigma)."""

    family: ClassVar[str] = "schedules"
    has_table: ClassVar[bool] = False

    def levels_from_sigma_edm(self, sigma_edm: Tensor) -> Levels:
        """The levels whose EDM sigma (sigma / alpha) is ``sigma_edm``."""
        raise NotImplementedError

    def sample_uniform_t(self, n: int, generator: torch.Generator, device,
                         discrete: bool = True) -> Levels:
        """Levels at n times drawn uniformly over the schedule's time axis."""
        raise NotImplementedError

    def time_input(self, levels: Levels) -> Tensor:
        """The conditioning a network trained on this schedule's time takes."""
        raise NotImplementedError

    def sigma_edm_range(self) -> tuple[float, float]:
        """The smallest and largest EDM sigma the process reaches."""
        raise NotImplementedError


class DiscreteSchedule(Schedule):
    """A t-space schedule with a table of T betas (seed 001 §6.3, seed 004 Theory II)."""

    has_table: ClassVar[bool] = True

    def betas(self) -> Tensor:
        """beta_1..beta_T in float64."""
        raise NotImplementedError

    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps in the table."""
        return self.table["betas"].shape[0]

    @cached_property
    def table(self) -> dict[str, Tensor]:
        """Float64 tables indexed by t = 0..T (index 0: no noise, alpha_bar_0 = 1)."""
        betas = self.betas().to(torch.float64)
        alphas = 1.0 - betas
        alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(alphas, 0)])
        betas0 = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        alphas0 = 1.0 - betas0
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        one_m = (1.0 - alpha_bar).clamp(min=1e-300)
        # Posterior q(x_{t-1} | x_t, x0) = N(c_x0 x0 + c_xt x_t, beta_tilde) (seed 004 Theory II).
        post_var = betas0 * (1.0 - ab_prev) / one_m
        post_var[0] = 0.0
        c_x0 = betas0 * ab_prev.sqrt() / one_m
        c_xt = (1.0 - ab_prev) * alphas0.sqrt() / one_m
        c_x0[0], c_xt[0] = 1.0, 0.0
        with torch.no_grad():
            log_snr = torch.log(alpha_bar) - torch.log1p(-alpha_bar.clamp(max=1 - 1e-300))
        return {"betas": betas, "alpha_bar": alpha_bar, "alpha_bar_prev": ab_prev,
                "posterior_variance": post_var, "posterior_c_x0": c_x0,
                "posterior_c_xt": c_xt, "log_snr": log_snr}

    def _at(self, key: str, t: Tensor) -> Tensor:
        tab = self.table[key].to(t.device)
        return tab[t.long()]

    def alpha_bar(self, t: Tensor) -> Tensor:
        return self._at("alpha_bar", t)

    def beta(self, t: Tensor) -> Tensor:
        return self._at("betas", (t.long() - 1).clamp(min=0))

    def levels_at(self, t: Tensor) -> Levels:
        """Levels at t in 1..T; fractional t interpolates logSNR between table entries."""
        t = t.to(torch.float64)
        if torch.all(t == t.round()):
            ab = self.alpha_bar(t)
        else:
            log_snr = self.table["log_snr"].to(t.device)
            lo = t.floor().long().clamp(0, self.num_steps)
            hi = (lo + 1).clamp(max=self.num_steps)
            frac = t - lo
            ls = log_snr[lo] * (1 - frac) + log_snr[hi] * frac
            ab = torch.sigmoid(ls)
        return Levels(alpha=ab.sqrt().float(), sigma=(1.0 - ab).clamp(min=0).sqrt().float(),
                      t=t.float())

    def levels_from_sigma_edm(self, sigma_edm: Tensor) -> Levels:
        s = sigma_edm.to(torch.float64)
        # Variance preserving: alpha = 1/sqrt(1 + s^2), sigma = s alpha.
        alpha = torch.rsqrt(1.0 + s**2)
        t = self.t_from_log_snr(-2.0 * torch.log(s))
        return Levels(alpha=alpha.float(), sigma=(s * alpha).float(), t=t.float())

    def t_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """The fractional t whose interpolated logSNR equals ``log_snr`` (clamped to [0, T])."""
        table = self.table["log_snr"].to(log_snr.device)
        desc = -table  # increasing in t (logSNR falls with t); index 0 is -inf
        desc[0] = -math.inf
        x = -log_snr.to(torch.float64)
        hi = torch.searchsorted(desc.contiguous(), x.contiguous()).clamp(1, self.num_steps)
        lo = hi - 1
        d_lo, d_hi = desc[lo], desc[hi]
        frac = torch.where(torch.isfinite(d_lo), (x - d_lo) / (d_hi - d_lo), torch.ones_like(x))
        return (lo + frac.clamp(0, 1)).clamp(0, self.num_steps)

    def sample_uniform_t(self, n, generator, device, discrete=True) -> Levels:
        if discrete:
            t = torch.randint(1, self.num_steps + 1, (n,), generator=generator, device=device)
        else:
            t = 1 + (self.num_steps - 1) * torch.rand(n, generator=generator, device=device,
                                             dtype=torch.float64)
        return self.levels_at(t)

    def time_input(self, levels: Levels) -> Tensor:
        if levels.t is None:
            return self.t_from_log_snr(levels.log_snr).float()
        return levels.t.float()

    def sigma_edm_range(self) -> tuple[float, float]:
        ab = self.table["alpha_bar"]
        lo = math.sqrt((1 - ab[1].item()) / ab[1].item())
        hi = math.sqrt((1 - ab[-1].item()) / ab[-1].item()) if ab[-1] > 0 else math.inf
        return lo, hi


class SigmaSchedule(Schedule):
    """A sigma-space schedule: EDM sigma over a time axis, with a scale s(sigma).

    ``sigma_at(u)`` maps u in [0, 1] to EDM's sigma; ``scale`` gives alpha = s(sigma).
    """

    def sigma_at(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def scale(self, sigma_edm: Tensor) -> Tensor:
        return torch.ones_like(sigma_edm)

    def levels_from_sigma_edm(self, sigma_edm: Tensor) -> Levels:
        s = sigma_edm.to(torch.float64)
        alpha = self.scale(s)
        return Levels(alpha=alpha.float(), sigma=(alpha * s).float(), t=None)

    def sample_uniform_t(self, n, generator, device, discrete=True) -> Levels:
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        return self.levels_from_sigma_edm(self.sigma_at(u))

    def time_input(self, levels: Levels) -> Tensor:
        # EDM's c_noise (seed 001 §8.1.2): a quarter of log sigma.
        return 0.25 * torch.log(levels.sigma_edm)
