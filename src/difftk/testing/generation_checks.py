"""Contract of samplers, checked with a denoiser whose answer is known in closed form.

For data x0 ~ N(mu, s^2 I) the ideal denoiser is E[x0 | x_t] = mu + s^2 alpha / (alpha^2 s^2
+ sigma^2) (x_t - alpha mu), so a sampler can be checked without training anything.
"""

from __future__ import annotations

import torch
from torch import nn

from difftk.testing.runner import partners

MU, STD = 0.5, 0.3


class GaussianIdealNet(nn.Module):
    """The exact E[x0 | x_t] for data N(mu, s^2 I), reading the noise level back from the
    time input through the schedule (table time t, or EDM's c_noise = ln(sigma) / 4)."""

    def __init__(self, schedule, mu: float = MU, s: float = STD):
        super().__init__()
        self.schedule, self.mu, self.s = schedule, mu, s

    def forward(self, x, time, labels=None):
        if self.schedule.has_table:
            levels = self.schedule.levels_at(time.double())
        else:
            levels = self.schedule.levels_from_sigma_edm(torch.exp(4 * time.double()))
        shape = (-1, *[1] * (x.dim() - 1))
        a, sg = levels.alpha.double().view(shape), levels.sigma.double().view(shape)
        gain = self.s**2 * a / (a**2 * self.s**2 + sg**2)
        return (self.mu + gain * (x.double() - a * self.mu)).float()


def gaussian_denoiser(schedule, mu: float = MU, s: float = STD):
    """A Denoiser (x0 target, posterior variance) around the ideal network for N(mu, s^2)."""
    from difftk.diffusion.denoiser import Denoiser
    from difftk.registry import default_registry

    registry = default_registry()  # the built-ins by name, as a plugin author would reach them
    x0_target = registry.get("targets", "x0").cls()
    posterior_variance = registry.get("variance", "fixed_small").cls()
    return Denoiser(GaussianIdealNet(schedule, mu, s), schedule, x0_target, posterior_variance)


def _usable(sampler) -> list:
    """One usable schedule of each kind (with a table, without): enough to cover both paths."""
    usable = partners(sampler, "schedules")
    assert usable, f"no built-in schedule is usable with {sampler.name}"
    chosen = {}
    for schedule in usable:
        chosen.setdefault(schedule.has_table, schedule)
    return list(chosen.values())


def check_sampler_fixed_noise_fixed_sample(sampler) -> None:
    """The same noise and generator seed give the same finite sample of the noise's shape; with
    the ideal denoiser of N(0.5, 0.3^2) its mean is 0.5 +- 0.08 and its std in (0.15, 0.45)
    (loose: few-step ancestral samplers lose some variance)."""
    for schedule in _usable(sampler):
        denoiser = gaussian_denoiser(schedule)
        noise = torch.randn(256, 1, generator=torch.Generator().manual_seed(0))
        a = sampler.sample(denoiser, noise.clone(), torch.Generator().manual_seed(1))
        b = sampler.sample(denoiser, noise.clone(), torch.Generator().manual_seed(1))
        assert a.x.shape == noise.shape, f"sample shape {tuple(a.x.shape)} on {schedule.name}"
        assert torch.isfinite(a.x).all(), f"non-finite samples on {schedule.name}"
        assert torch.equal(a.x, b.x), f"a fixed noise and seed gave two samples on {schedule.name}"
        assert a.nfe >= 1, f"reported {a.nfe} network evaluations"
        mean, std = float(a.x.double().mean()), float(a.x.double().std())
        assert abs(mean - MU) < 0.08 and 0.15 < std < 0.45, \
            f"on {schedule.name}: mean {mean:.3f}, std {std:.3f} (data: {MU}, {STD})"


CHECKS = {"samplers": [check_sampler_fixed_noise_fixed_sample]}
