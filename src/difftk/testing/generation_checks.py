"""Contract of samplers, checked with a denoiser whose answer is known in closed form.

For data x0 ~ N(mu, s^2 I) the ideal denoiser is E[x0 | x_t] = mu + s^2 alpha / (alpha^2 s^2
+ sigma^2) (x_t - alpha mu), so a sampler can be checked without training anything.
"""

from __future__ import annotations

import torch

from difftk.testing.denoisers import MU, STD, gaussian_denoiser
from difftk.testing.runner import partners


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
