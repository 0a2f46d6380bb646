"""Flow-matching paths as schedules: x_t = alpha(t) x0 + sigma(t) eps for t in [0, 1].

A flow path (Lipman et al. 2023; Liu et al. 2023; Albergo & Vanden-Eijnden 2023) is a
schedule whose time runs from data (t = 0: alpha = 1, sigma = 0) to noise (t = 1), written
in difftk's one coordinate system (DESIGN.md), so every target, weighting, noise
distribution and sampler composes with it. SiT (Ma et al. 2024) runs its time the other
way (t = 0 noise, t = 1 data) and writes x_t = alpha_t x_1 + sigma_t x_0 with x_1 the data;
its t is 1 - t here.

The shift (Esser et al. 2024, Stable Diffusion 3 §5.3.2, eq. 23) reparametrises the time
axis: the path is evaluated at t = s u / (1 + (s - 1) u) for u on the schedule's axis, so
"uniform t", a logit-normal draw, and the uniform_t sampling grid all move toward noise
for s > 1, as SD3 shifts both its training times and its sampling grid (diffusers'
FlowMatchEulerDiscreteScheduler, ``shift``). On the linear path the shift multiplies EDM's
sigma by s: t / (1 - t) = s u / (1 - u).

The network is conditioned on the path time (shifted), times ``time_scale``: 1000 as
diffusers and SD3 feed their transformers, 1 as SiT does.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field
from torch import Tensor

from difftk.diffusion.levels import Levels
from difftk.diffusion.schedule import PathDerivative, Schedule


class FlowSchedule(Schedule):
    """A path (alpha(t), sigma(t)) on t in [0, 1] with SD3's time shift.

    Subclasses give ``path(t)``, ``path_rates(t)`` (d alpha / dt, d sigma / dt) and
    ``path_time(alpha, sigma)``, the t of a level on the path, in float64.
    """

    variance_preserving: ClassVar[bool] = False

    shift: float = Field(1.0, gt=0, le=1000, description="time shift s: the path is taken at "
                         "t = s u / (1 + (s - 1) u) (Esser et al. 2024 eq. 23; 3.0 in SD3); "
                         "1 leaves it")
    time_scale: float = Field(1000.0, gt=0, description="the network sees path time t times "
                              "this (1000 as diffusers and SD3, 1 as SiT)")

    def path(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def path_rates(self, t: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def path_time(self, alpha: Tensor, sigma: Tensor) -> Tensor:
        raise NotImplementedError

    # -- the shift: u on the axis -> t on the path, and back
    def shifted(self, u: Tensor) -> Tensor:
        s = self.shift
        return u if s == 1.0 else s * u / (1 + (s - 1) * u)

    def unshifted(self, t: Tensor) -> Tensor:
        s = self.shift
        return t if s == 1.0 else t / (s - (s - 1) * t)

    def _levels(self, t: Tensor) -> Levels:
        alpha, sigma = self.path(t)
        return Levels(alpha=alpha.float(), sigma=sigma.float(), t=None)

    def time_range(self) -> tuple[float, float]:
        return 0.0, 1.0

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return self.path(self.shifted(t.to(torch.float64)))

    def levels_at_time(self, t: Tensor) -> Levels:
        return self._levels(self.shifted(t.to(torch.float64)))

    def path_time_of(self, levels: Levels) -> Tensor:
        """The path time t (shift applied) of each level, float64."""
        return self.path_time(levels.alpha.double(), levels.sigma.double())

    def levels_from_sigma_edm(self, sigma_edm: Tensor) -> Levels:
        s = sigma_edm.to(torch.float64)
        return self._levels(self.path_time(torch.ones_like(s), s))

    def time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        s = torch.exp(-0.5 * log_snr.to(torch.float64))
        return self.unshifted(self.path_time(torch.ones_like(s), s)).clamp(0, 1)

    def time_input(self, levels: Levels) -> Tensor:
        return (self.time_scale * self.path_time_of(levels)).float()

    def path_derivative(self, levels: Levels) -> PathDerivative:
        t = self.path_time_of(levels)
        d_alpha, d_sigma = self.path_rates(t)
        return PathDerivative(t=t, d_alpha=d_alpha, d_sigma=d_sigma)

    def levels_at_logit_time(self, logit: Tensor) -> Levels:
        return self.levels_at_time(torch.sigmoid(logit.to(torch.float64)))

    def logit_time_from_log_snr(self, log_snr: Tensor) -> Tensor:
        return torch.logit(self.time_from_log_snr(log_snr))

    def sigma_edm_range(self) -> tuple[float, float]:
        alpha, sigma = self.path(torch.tensor([0.0, 1.0], dtype=torch.float64))
        ratio = [float(s / a) if a > 0 else float("inf") for a, s in zip(alpha, sigma, strict=True)]
        return ratio[0], ratio[1]

    def curve(self, n: int = 1000) -> tuple[Tensor, Tensor, Tensor]:
        u = torch.linspace(0, 1, n, dtype=torch.float64)
        alpha, sigma = self.alpha_sigma(u)
        return u, alpha, sigma
