"""Contracts of the mathematical families: schedules, targets, weights, noise sampling, variance.

All of them meet in x_t = alpha x0 + sigma eps (DESIGN.md), so each check builds levels in
that coordinate system and asks the component for what its base class promises.
"""

from __future__ import annotations

import torch

from difftk.diffusion.levels import Levels
from difftk.diffusion.table_rule import table_problems
from difftk.testing.runner import partners

LOG_SNR_SPAN = 30.0  # weights are checked over logSNR in [-30, 30], plus SNR = 0


def levels_from_log_snr(log_snr: torch.Tensor) -> Levels:
    """Variance-preserving levels (alpha^2 + sigma^2 = 1) at the given logSNR, float64."""
    log_snr = log_snr.to(torch.float64)
    return Levels(alpha=torch.sigmoid(log_snr).sqrt(), sigma=torch.sigmoid(-log_snr).sqrt())


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


# ---------------------------------------------------------------- schedules
def _sigma_grid(schedule, n: int = 64) -> torch.Tensor:
    lo, hi = schedule.sigma_edm_range()
    hi = min(hi, 1e4)  # zero terminal SNR reaches sigma = inf; stop well before
    lo = max(lo, 1e-4)  # a flow path starts at the data, sigma = 0
    return torch.logspace(torch.log10(torch.tensor(lo)), torch.log10(torch.tensor(hi)), n,
                          dtype=torch.float64)


def check_schedule_snr_monotone(schedule) -> None:
    """SNR falls strictly as the noise level (and, with a table, as t) rises."""
    lo, hi = schedule.sigma_edm_range()
    assert 0 <= lo < hi, f"sigma_edm_range() = ({lo}, {hi}) is not 0 <= lo < hi"
    if schedule.has_table:
        log_snr = schedule.table["log_snr"][1:]
        assert torch.all(log_snr[1:] < log_snr[:-1]), "table logSNR is not strictly decreasing in t"
        betas = schedule.table["betas"]
        assert torch.all((betas > 0) & (betas <= 1)), "betas outside (0, 1]"
    sigma = _sigma_grid(schedule)
    levels = schedule.levels_from_sigma_edm(sigma)
    log_snr = levels.log_snr.double()
    assert _finite(log_snr), "levels_from_sigma_edm gives non-finite logSNR inside the range"
    assert torch.all(log_snr[1:] < log_snr[:-1]), "logSNR does not fall as EDM sigma rises"
    if hasattr(schedule, "sigma_at"):
        s = schedule.sigma_at(torch.linspace(0, 1, 65, dtype=torch.float64))
        assert torch.all(s[1:] >= s[:-1]), "sigma_at(u) decreases somewhere in u"


def check_schedule_levels_round_trip(schedule) -> None:
    """levels_from_sigma_edm(s) has EDM sigma s, alpha >= 0, sigma > 0, finite time input."""
    sigma = _sigma_grid(schedule)
    levels = schedule.levels_from_sigma_edm(sigma)
    assert torch.all(levels.alpha >= 0) and torch.all(levels.sigma > 0), "alpha < 0 or sigma <= 0"
    back = levels.sigma_edm.double()
    assert torch.allclose(back, sigma, rtol=1e-4), "sigma / alpha does not give back EDM sigma"
    assert _finite(schedule.time_input(levels)), "time_input is not finite inside the range"


def uniform_t_levels(schedule, n: int, seed: int, discrete: bool = True) -> Levels:
    """n levels at t uniform on the schedule's time axis: the uniform_t noise sampler's draws."""
    from difftk.registry import default_registry

    uniform = default_registry().get("noise_sampling", "uniform_t").cls(discrete=discrete)
    return uniform.sample(n, schedule, torch.Generator().manual_seed(seed), "cpu")


def check_schedule_uniform_t_is_seeded(schedule) -> None:
    """Uniform t draws finite levels inside the range and repeats under a fixed seed."""
    lo, hi = schedule.sigma_edm_range()
    for discrete in (True, False):
        a = uniform_t_levels(schedule, 256, 0, discrete)
        b = uniform_t_levels(schedule, 256, 0, discrete)
        assert len(a) == 256, f"asked for 256 levels, got {len(a)}"
        assert torch.equal(a.alpha, b.alpha) and torch.equal(a.sigma, b.sigma), "not seeded"
        s = a.sigma_edm.double()
        assert torch.all(s >= lo * (1 - 1e-4)) and torch.all(s <= hi * (1 + 1e-4)), \
            f"draws outside sigma_edm_range (discrete={discrete})"
        assert _finite(schedule.time_input(a)), "time_input of the draws is not finite"


# ---------------------------------------------------------------- targets
def bound(target, schedule):
    """The target tied to a schedule when it can be (targets may read the schedule's table)."""
    return target.bind(schedule) if hasattr(target, "bind") else target


def schedule_levels(schedule, n: int = 64, seed: int = 0) -> Levels:
    """Float64 levels spread over a schedule: integer table steps, or an EDM-sigma grid."""
    if schedule.has_table:
        levels = uniform_t_levels(schedule, n, seed)
    else:
        levels = schedule.levels_from_sigma_edm(_sigma_grid(schedule, n))
    return Levels(alpha=levels.alpha.double(), sigma=levels.sigma.double(), t=levels.t)


def _random_batch(schedule, seed: int = 0):
    levels = schedule_levels(schedule, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(len(levels), 3, generator=g, dtype=torch.float64)
    eps = torch.randn(len(levels), 3, generator=g, dtype=torch.float64)
    return levels, x0, eps, levels.alpha[:, None] * x0 + levels.sigma[:, None] * eps


def _usable_schedules(component) -> list:
    usable = partners(component, "schedules")
    assert usable, f"no built-in schedule is usable with {component.name}"
    return usable


def check_target_round_trip(target) -> None:
    """The exact target maps back to x0 and eps given x_t (float64, on every usable schedule)."""
    for schedule in _usable_schedules(target):
        tgt = bound(target, schedule)
        levels, x0, eps, x_t = _random_batch(schedule)
        keep = levels.log_snr.abs() < 12  # far ends lose digits in any parameterisation
        levels = Levels(levels.alpha[keep], levels.sigma[keep],
                        None if levels.t is None else levels.t[keep])
        x0, eps, x_t = x0[keep], eps[keep], x_t[keep]
        value = tgt.value(x0, eps, levels)
        assert torch.allclose(tgt.to_x0(value, x_t, levels), x0, atol=1e-7), \
            f"to_x0 is not exact on {schedule.name}"
        assert torch.allclose(tgt.to_eps(value, x_t, levels), eps, atol=1e-7), \
            f"to_eps is not exact on {schedule.name}"


def check_target_error_factor(target) -> None:
    """||T_hat - T||^2 = x0_error_factor ||x0_hat - x0||^2 at fixed x_t (seed 003 eq. 5.3, 5.7)."""
    for schedule in _usable_schedules(target):
        tgt = bound(target, schedule)
        levels, x0, eps, x_t = _random_batch(schedule, seed=1)
        x0_hat = x0 + 0.01
        eps_hat = (x_t - levels.alpha[:, None] * x0_hat) / levels.sigma[:, None]
        err_t = (tgt.value(x0_hat, eps_hat, levels) - tgt.value(x0, eps, levels)).square().sum(1)
        err_x0 = (x0_hat - x0).square().sum(1)
        k = tgt.x0_error_factor(levels).double()
        assert torch.all(k >= 0), f"x0_error_factor is negative on {schedule.name}"
        assert torch.allclose(err_t, k * err_x0, rtol=1e-5), \
            f"x0_error_factor does not match value() on {schedule.name}"


def check_target_network_io(target) -> None:
    """The preconditioning's network input and prediction keep the data's shape and stay finite
    on every usable schedule."""
    for schedule in _usable_schedules(target):
        tgt = bound(target, schedule)
        levels = schedule.levels_from_sigma_edm(_sigma_grid(schedule, 16))
        x_t = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
        pre = tgt.preconditioning(levels)
        x_in, time = pre.net_input(x_t), pre.noise
        assert x_in.shape == x_t.shape and time.shape == (16,), f"net_input shapes on {schedule.name}"
        assert _finite(x_in) and _finite(time), f"net_input not finite on {schedule.name}"
        pred = pre.prediction(torch.zeros_like(x_t), x_t)
        assert pred.shape == x_t.shape and _finite(pred), f"prediction broken on {schedule.name}"


# ---------------------------------------------------------------- weights
def _weight_levels(weighting) -> list[tuple[object, Levels]]:
    """(schedule, levels) pairs spanning the SNR range the weighting must handle."""
    if weighting.needs_table or weighting.reads_schedule:
        out = []
        for schedule in _usable_schedules(weighting):
            if schedule.has_table:
                out.append((schedule, schedule.levels_at(torch.arange(1, schedule.num_steps + 1))))
            out.append((schedule, schedule.levels_from_sigma_edm(_sigma_grid(schedule))))
        return out
    log_snr = torch.linspace(-LOG_SNR_SPAN, LOG_SNR_SPAN, 121, dtype=torch.float64)
    levels = levels_from_log_snr(log_snr)
    zero = Levels(alpha=torch.zeros(1, dtype=torch.float64), sigma=torch.ones(1, dtype=torch.float64))
    return [(None, levels), (None, zero)]


def check_weight_finite_nonnegative(weighting) -> None:
    """w is finite and >= 0 at SNR = 0 and over logSNR in [-30, 30] (or the whole table)."""
    for schedule, levels in _weight_levels(weighting):
        w = weighting.at(levels, schedule)
        assert w.shape == (len(levels),), f"w has shape {tuple(w.shape)}, expected ({len(levels)},)"
        assert _finite(w), f"w is not finite at logSNR {levels.log_snr[~torch.isfinite(w)][:3]}"
        assert torch.all(w >= 0), f"w is negative at logSNR {levels.log_snr[w < 0][:3]}"


def check_weight_is_per_sample(weighting) -> None:
    """w of a batch is w of each sample: no statistics across the batch."""
    for schedule, levels in _weight_levels(weighting)[:1]:
        whole = weighting.at(levels, schedule)
        for i in (0, len(levels) // 2, len(levels) - 1):
            one = Levels(alpha=levels.alpha[i:i + 1], sigma=levels.sigma[i:i + 1],
                         t=None if levels.t is None else levels.t[i:i + 1])
            assert torch.allclose(weighting.at(one, schedule), whole[i:i + 1], rtol=1e-12), \
                f"w of sample {i} alone differs from w in the batch"


def check_weight_relative_to(weighting) -> None:
    """on_target honours relative_to: w on the x0-MSE (or w SNR on the eps-MSE) is divided by each
    target's error factor."""
    for schedule in _usable_schedules(weighting):
        levels = schedule_levels(schedule)
        inside = levels.log_snr.abs() < 12
        levels = Levels(levels.alpha[inside], levels.sigma[inside],
                        None if levels.t is None else levels.t[inside])
        w = weighting.at(levels, schedule).double()
        for target in partners(weighting, "targets"):
            if target.check({"schedule": schedule}) or table_problems({"target": target,
                                                                       "schedule": schedule}):
                continue
            tgt = bound(target, schedule)
            on_target = weighting.on_target(levels, tgt, schedule).double()
            k = tgt.x0_error_factor(levels).double()
            on_x0 = {"x0": w, "eps": w * levels.snr.double(), "target": w * k}[weighting.relative_to]
            expected = on_x0 / k
            assert torch.allclose(on_target, expected, rtol=1e-5), \
                f'on_target with relative_to="{weighting.relative_to}" is wrong for {target.name} ' \
                f"on {schedule.name}"


# ---------------------------------------------------------------- noise sampling
def check_noise_sampling_is_seeded(sampler) -> None:
    """Draws on every usable schedule: n finite levels, alpha >= 0, sigma > 0, repeatable."""
    usable = partners(sampler, "schedules")
    assert usable, f"no built-in schedule is usable with {sampler.name}"
    for schedule in usable:
        a = sampler.sample(512, schedule, torch.Generator().manual_seed(0), "cpu")
        b = sampler.sample(512, schedule, torch.Generator().manual_seed(0), "cpu")
        assert len(a) == 512, f"asked for 512 levels on {schedule.name}, got {len(a)}"
        assert torch.equal(a.alpha, b.alpha) and torch.equal(a.sigma, b.sigma), "not seeded"
        assert _finite(a.alpha) and _finite(a.sigma), f"non-finite levels on {schedule.name}"
        assert torch.all(a.alpha >= 0) and torch.all(a.sigma > 0), f"alpha < 0 or sigma <= 0 on " \
            f"{schedule.name}"
        if a.weight is not None:
            assert a.weight.shape == (512,) and _finite(a.weight) and torch.all(a.weight >= 0), \
                "the importance weight is not a finite non-negative [n] tensor"


# ---------------------------------------------------------------- variance
def check_variance_log_variance(variance) -> None:
    """Finite log-variances; fixed ones lie between log beta_tilde and log beta (Ho et al. 2020).

    Called as the DDPM sampler calls it: scalar beta and beta_tilde, extra of shape [B, C].
    """
    for beta in (1e-4, 0.02, 0.5):
        b = torch.tensor(beta, dtype=torch.float64)
        bt = 0.9 * b
        extra = torch.zeros(4, 2, dtype=torch.float64) if variance.learned else None
        log_var = variance.log_variance(b, bt, extra)
        assert _finite(log_var), f"log_variance is not finite at beta = {beta}"
        if not variance.learned:
            assert torch.all(log_var >= torch.log(bt) - 1e-9) and \
                torch.all(log_var <= torch.log(b) + 1e-9), "a fixed variance outside [beta_tilde, beta]"


CHECKS = {
    "schedules": [check_schedule_snr_monotone, check_schedule_levels_round_trip,
                  check_schedule_uniform_t_is_seeded],
    "targets": [check_target_round_trip, check_target_error_factor, check_target_network_io],
    "weights": [check_weight_finite_nonnegative, check_weight_is_per_sample,
                check_weight_relative_to],
    "noise_sampling": [check_noise_sampling_is_seeded],
    "variance": [check_variance_log_variance],
}
