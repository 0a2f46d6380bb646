"""Forward processes: the base class and the two kinds DESIGN.md describes.

A t-space schedule (``DiscreteSchedule``) keeps a table of T levels alpha_bar_t,
t = 1..T, its posterior q(x_{t-1} | x_t, x0) and the map from a noise level to the
(fractional) t a network trained on t takes. A sigma-space schedule
(``SigmaSchedule``, EDM's view, seed 001 §8.1.1) maps EDM's sigma to (alpha, sigma)
through a scale s: x = s (x0 + sigma_edm eps).

Every schedule has a continuous time axis (``time_range``): t in [1, T] for t-space
schedules, u in [0, 1] for sigma-space ones. "Uniform t" means uniform on that axis,
and it is the reference distribution of importance sampling (noise_sampling.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import torch
from pydantic import Field, model_validator
from torch import Tensor

from difftk.component import Component
from difftk.diffusion.levels import Levels


@dataclass(frozen=True)
class PathDerivative:
    """The rate of the path x_t = alpha x0 + sigma eps at a batch of levels: t is the time
    the derivative is taken in (float64, [B]), d_alpha and d_sigma its derivatives."""

    t: Tensor
    d_alpha: Tensor
    d_sigma: Tensor


class Schedule(Component):
    """A forward process t -> (alpha, sigma)."""

    family: ClassVar[str] = "schedules"
    has_table: ClassVar[bool] = False
    variance_preserving: ClassVar[bool] = True  # alpha^2 + sigma^2 = 1 at every level

    def levels_from_sigma_edm(self, sigma_edm: Tensor) -> Levels:
        """The levels whose EDM sigma (sigma / alpha) is ``sigma_edm``."""
        raise NotImplementedError

    def time_range(self) -> tuple[float, float]:
        """The continuous time axis [t_lo, t_hi] that "uniform t" is uniform on."""
        raise NotImplementedError

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha, sigma) in float64 at times t on the schedule's continuous axis."""
        raise NotImplementedError

    def levels_at_time(self, t: Tensor) -> Levels:
        """Levels (float32) at times t on the continuous axis."""
        raise NotImplementedError

    def time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """The time whose logSNR is ``log_snr`` (float64), clamped to the schedule's axis ends."""
        raise NotImplementedError

    def time_input(self, levels: Levels) -> Tensor:
        """The conditioning a network trained on this schedule's time takes."""
        raise NotImplementedError

    def path_derivative(self, levels: Levels) -> PathDerivative:
        """d alpha / dt and d sigma / dt at ``levels``, t on the schedule's time axis (float64).

        The velocity target d x_t / dt = d_alpha x0 + d_sigma eps and the flow samplers read
        it. This default differentiates ``alpha_sigma`` at ``time_from_log_snr`` by autograd;
        flow schedules give their path's closed form in the path's own time.
        """
        t = self.time_from_log_snr(levels.log_snr.detach().double()).detach()
        with torch.enable_grad():
            x = t.clone().requires_grad_(True)
            rates = [torch.autograd.grad(v.sum(), x, retain_graph=True)[0] if v.requires_grad
                     else torch.zeros_like(x) for v in self.alpha_sigma(x)]  # constant: 0
        return PathDerivative(t=t, d_alpha=rates[0].detach(), d_sigma=rates[1].detach())

    def levels_at_logit_time(self, logit: Tensor) -> Levels:
        """The levels a logit-time draw stands for (the logit-normal and SD3 distributions).

        The default reads the logit as that of rectified-flow time, t / (1 - t) = sigma_edm, so
        it is ln sigma_edm on every schedule; flow schedules read it on their own time axis
        (their shift included), as Stable Diffusion 3 draws its training times.
        """
        return self.levels_from_sigma_edm(torch.exp(logit.to(torch.float64)))

    def logit_time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """The inverse of ``levels_at_logit_time`` as a function of logSNR (float64)."""
        return -0.5 * log_snr.to(torch.float64)

    def sigma_edm_range(self) -> tuple[float, float]:
        """The smallest and largest EDM sigma the process reaches."""
        raise NotImplementedError

    def curve(self, n: int = 1000) -> tuple[Tensor, Tensor, Tensor]:
        """(t / t_max, alpha, sigma) in float64 along the time axis, for figures and tables."""
        raise NotImplementedError


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Lin et al. 2024, Algorithm 1: rescale so alpha_bar_T = 0 exactly, alpha_bar_1 unchanged.

    sqrt(alpha_bar) is shifted so its last value is 0 and scaled so its first is unchanged,
    then the betas are read back from the ratios (beta_T = 1). Seed 001 §6.3 writes the
    fix as beta'_t = beta_t (1 - alpha_bar_1) / (1 - alpha_bar_T); that factor is below 1,
    so it shrinks every beta and raises alpha_bar_T (to about 0.999 for DDPM's linear
    schedule) instead of sending it to 0. It does not reach SNR(T) = 0, so we use Lin et al.
    """
    a = torch.cumprod(1.0 - betas.to(torch.float64), 0).sqrt()
    a_first, a_last = a[0].clone(), a[-1].clone()
    a = (a - a_last) * a_first / (a_first - a_last)
    a[-1] = 0.0  # exact, not a rounding residue
    alpha_bar = a**2
    alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return 1.0 - alphas


class DiscreteSchedule(Schedule):
    """A t-space schedule with a table of T betas (seed 001 §6.3, seed 004 Theory II).

    Subclasses give ``base_betas(T, scale)``: the T betas of the formula with its beta
    range multiplied by ``scale``. The options shared by every t-space schedule are here:
    zero terminal SNR (Lin et al. 2024) and the T' rescaling of seed 003 eq. 1.25.
    """

    has_table: ClassVar[bool] = True

    T: int = Field(1000, ge=2, le=100_000, description="number of diffusion steps the beta range "
                   "is set for (at most 100,000: the table of T levels is built on validation)")
    zero_terminal_snr: bool = Field(
        False, description="rescale so alpha_bar_T = 0 exactly (Lin et al. 2024)")
    rescale_to_T: int = Field(
        0, ge=0, le=100_000, description="use this many steps, beta range scaled by T / rescale_to_T "
                             "(seed 003 eq. 1.25); 0 keeps T")

    def base_betas(self, T: int, scale: float) -> Tensor:
        """beta_1..beta_T (float64) of the formula with the beta range multiplied by ``scale``."""
        raise NotImplementedError

    @model_validator(mode="after")
    def _betas_are_probabilities(self):
        betas = self.betas()
        inner = betas[:-1] if self.zero_terminal_snr else betas
        if not (torch.all(inner > 0) and torch.all(inner < 1)):
            raise ValueError(f"the betas must lie in (0, 1); these give [{float(betas.min()):.3g}, "
                             f"{float(betas.max()):.3g}]")
        return self

    def betas(self) -> Tensor:
        """beta_1..beta_T in float64, after the rescaling options."""
        steps = self.rescale_to_T or self.T
        # Seed 003 eq. 1.25: a' = a T / T', b' = b T / T' keeps alpha_bar's decay profile,
        # since prod(1 - beta) ~ exp(-sum beta) and the sum over T' steps is unchanged.
        betas = self.base_betas(steps, self.T / steps).to(torch.float64)
        if self.zero_terminal_snr:
            betas = rescale_zero_terminal_snr(betas)
        return betas

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
        log_snr = torch.log(alpha_bar) - torch.log1p(-alpha_bar.clamp(max=1 - 1e-300))
        log_snr[0] = math.inf
        return {"betas": betas, "alphas": alphas, "alpha_bar": alpha_bar, "alpha_bar_prev": ab_prev,
                "posterior_variance": post_var, "posterior_c_x0": c_x0,
                "posterior_c_xt": c_xt, "log_snr": log_snr}

    def _at(self, key: str, t: Tensor) -> Tensor:
        tab = self.table[key].to(t.device)
        return tab[t.long()]

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar_t = prod_{s <= t} (1 - beta_s) at integer t in 0..T."""
        return self._at("alpha_bar", t)

    def beta(self, t: Tensor) -> Tensor:
        """beta_t at integer t in 1..T."""
        return self._at("betas", (t.long() - 1).clamp(min=0))

    def alpha_t(self, t: Tensor) -> Tensor:
        """alpha_t = 1 - beta_t (the one-step factor, not sqrt(alpha_bar))."""
        return 1.0 - self.beta(t)

    def time_range(self) -> tuple[float, float]:
        return 1.0, float(self.num_steps)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Table values at integer t; between entries, logSNR is interpolated linearly.

        Where logSNR is infinite at a segment's end (t = 0, and t = T at zero terminal
        SNR) the interpolation is linear in sigma (resp. alpha) instead, so it stays finite.
        """
        t = t.to(torch.float64)
        T = self.num_steps
        ls_tab = self.table["log_snr"].to(t.device)
        ab_tab = self.table["alpha_bar"].to(t.device)
        lo = t.floor().long().clamp(0, T - 1)
        frac = (t - lo).clamp(0, 1)
        ls_lo, ls_hi = ls_tab[lo], ls_tab[lo + 1]
        ab_lo, ab_hi = ab_tab[lo], ab_tab[lo + 1]
        finite = torch.isfinite(ls_lo) & torch.isfinite(ls_hi)
        ab_log = torch.sigmoid(torch.where(finite, ls_lo + frac * (ls_hi - ls_lo),
                                           torch.zeros_like(t)))
        s_lin = (1 - ab_lo).sqrt() * (1 - frac) + (1 - ab_hi).sqrt() * frac
        a_lin = ab_lo.sqrt() * (1 - frac) + ab_hi.sqrt() * frac
        ab = torch.where(finite, ab_log, torch.where(torch.isinf(ls_lo), 1 - s_lin**2, a_lin**2))
        exact = t == t.round()
        ab = torch.where(exact, ab_tab[t.round().long().clamp(0, T)], ab)
        return ab.sqrt(), (1.0 - ab).clamp(min=0).sqrt()

    def levels_at(self, t: Tensor) -> Levels:
        """Levels at t in 1..T; fractional t interpolates logSNR between table entries."""
        alpha, sigma = self.alpha_sigma(t)
        return Levels(alpha=alpha.float(), sigma=sigma.float(), t=t.float())

    def levels_at_time(self, t: Tensor) -> Levels:
        return self.levels_at(t)

    def levels_from_sigma_edm(self, sigma_edm: Tensor) -> Levels:
        s = sigma_edm.to(torch.float64)
        # Variance preserving: alpha = 1/sqrt(1 + s^2), sigma = s alpha.
        alpha = torch.rsqrt(1.0 + s**2)
        t = self.time_from_log_snr(-2.0 * torch.log(s))
        return Levels(alpha=alpha.float(), sigma=(s * alpha).float(), t=t.float())

    def time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        """The fractional t whose interpolated logSNR equals ``log_snr`` (clamped to [0, T]).

        The exact inverse of ``alpha_sigma`` between table entries.
        """
        T = self.num_steps
        table = self.table["log_snr"].to(log_snr.device)
        ab_tab = self.table["alpha_bar"].to(log_snr.device)
        x = log_snr.to(torch.float64)
        # logSNR falls with t; search the increasing -logSNR for the segment [lo, lo + 1].
        hi = torch.searchsorted((-table).contiguous(), (-x).contiguous()).clamp(1, T)
        lo = hi - 1
        ls_lo, ls_hi = table[lo], table[hi]
        finite = torch.isfinite(ls_lo) & torch.isfinite(ls_hi)
        frac_log = (ls_lo - x) / torch.where(finite, ls_lo - ls_hi, torch.ones_like(x))
        # sigma-linear first segment and alpha-linear last segment (see alpha_sigma).
        s_lo, s_hi = (1 - ab_tab[lo]).sqrt(), (1 - ab_tab[hi]).sqrt()
        a_lo, a_hi = ab_tab[lo].sqrt(), ab_tab[hi].sqrt()
        frac_s = (torch.sigmoid(-x).sqrt() - s_lo) / (s_hi - s_lo)
        frac_a = (a_lo - torch.sigmoid(x).sqrt()) / (a_lo - a_hi)
        frac = torch.where(finite, frac_log, torch.where(torch.isinf(ls_lo), frac_s, frac_a))
        frac = torch.nan_to_num(frac, nan=1.0, posinf=1.0, neginf=0.0).clamp(0, 1)
        return (lo + frac).clamp(0, T)

    def time_input(self, levels: Levels) -> Tensor:
        if levels.t is None:
            return self.time_from_log_snr(levels.log_snr).float()
        return levels.t.float()

    def path_derivative(self, levels: Levels) -> PathDerivative:
        """d alpha / dt, d sigma / dt along the interpolated table: a central difference of
        width 1e-3 steps (one-sided at t = 0 and T), since autograd through the piecewise
        interpolation is undefined at its table points and infinite-logSNR ends."""
        t = levels.t.double() if levels.t is not None else \
            self.time_from_log_snr(levels.log_snr.double())
        h = 1e-3
        lo, hi = (t - h).clamp(0, self.num_steps), (t + h).clamp(0, self.num_steps)
        (a_lo, s_lo), (a_hi, s_hi) = self.alpha_sigma(lo), self.alpha_sigma(hi)
        return PathDerivative(t=t, d_alpha=(a_hi - a_lo) / (hi - lo),
                              d_sigma=(s_hi - s_lo) / (hi - lo))

    def sigma_edm_range(self) -> tuple[float, float]:
        ab = self.table["alpha_bar"]
        lo = math.sqrt((1 - ab[1].item()) / ab[1].item())
        hi = math.sqrt((1 - ab[-1].item()) / ab[-1].item()) if ab[-1] > 0 else math.inf
        return lo, hi

    def curve(self, n: int = 1000) -> tuple[Tensor, Tensor, Tensor]:
        t = torch.arange(1, self.num_steps + 1, dtype=torch.float64)
        alpha, sigma = self.alpha_sigma(t)
        return t / self.num_steps, alpha, sigma


class SigmaSchedule(Schedule):
    """A sigma-space schedule: EDM sigma over a time axis u in [0, 1], with a scale s(sigma).

    ``sigma_at(u)`` maps u to EDM's sigma and ``u_from_sigma`` inverts it; ``scale``
    gives alpha = s(sigma), so sigma_t = s sigma_edm.
    """

    def sigma_at(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def u_from_sigma(self, sigma_edm: Tensor) -> Tensor:
        raise NotImplementedError

    def scale(self, sigma_edm: Tensor) -> Tensor:
        return torch.ones_like(sigma_edm)

    def time_range(self) -> tuple[float, float]:
        return 0.0, 1.0

    def levels_from_sigma_edm(self, sigma_edm: Tensor) -> Levels:
        s = sigma_edm.to(torch.float64)
        alpha = self.scale(s)
        return Levels(alpha=alpha.float(), sigma=(alpha * s).float(), t=None)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        s = self.sigma_at(t.to(torch.float64))
        alpha = self.scale(s)
        return alpha, alpha * s

    def levels_at_time(self, t: Tensor) -> Levels:
        return self.levels_from_sigma_edm(self.sigma_at(t.to(torch.float64)))

    def time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        sigma = torch.exp(-0.5 * log_snr.to(torch.float64))
        return self.u_from_sigma(sigma).clamp(0, 1)

    def time_input(self, levels: Levels) -> Tensor:
        # EDM's c_noise (seed 001 §8.1.2): a quarter of log sigma.
        return 0.25 * torch.log(levels.sigma_edm)

    def sigma_edm_range(self) -> tuple[float, float]:
        ends = self.sigma_at(torch.tensor([0.0, 1.0], dtype=torch.float64))
        return float(ends[0]), float(ends[1])

    def curve(self, n: int = 1000) -> tuple[Tensor, Tensor, Tensor]:
        u = torch.linspace(0, 1, n, dtype=torch.float64)
        alpha, sigma = self.alpha_sigma(u)
        return u, alpha, sigma
