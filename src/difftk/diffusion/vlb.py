"""The variational bound of a t-space process, term by term (seed 003 ch. 2-3; Ho et al.
2020; Nichol & Dhariwal 2021).

    L_vlb = L_T + sum_{t=2}^T L_t + L_0
    L_T = KL(q(x_T | x0) || N(0, I))                      prior term, no parameters
    L_t = KL(q(x_{t-1} | x_t, x0) || p_theta(x_{t-1} | x_t))   Gaussian KL, eq. 3.4
    L_0 = -log p_theta(x0 | x1)                            discretized Gaussian decoder

Every function here works elementwise in nats; ``vlb_term_bits`` reduces one sample's
term to bits per dimension (mean over dimensions / ln 2), the unit of seed 003's NLL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from difftk.diffusion.levels import broadcast
from difftk.diffusion.pixel_range import UNIT_RANGE, PixelRange

LN2 = math.log(2.0)


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats.

    Seed 003 eq. 3.4 in log-variance form (§3.2.3): with q = (mean1, logvar1) the true
    posterior and p = (mean2, logvar2) the model,
    KL = 1/2 [logvar2 - logvar1 - 1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2)].
    (Eq. 3.7 as printed swaps the two log-variances; this is eq. 3.4, which is the KL
    and agrees with improved-diffusion's ``normal_kl``.)
    """
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """Page's (1977) tanh approximation of the standard normal CDF (seed 003 eq. 3.9)."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor,
                                        bins: int = 256,
                                        pixel_range: PixelRange = UNIT_RANGE) -> Tensor:
    """log P(x) for data on ``bins`` evenly spaced levels in [lo, hi] (the data's pixel range,
    [-1, 1] by default) under N(mean, e^(2 log_scale)), each level owning the bin of half the
    level spacing around it (seed 003 Algorithm 2; half-width 1/255 on [-1, 1]).

    The lowest level's bin extends to -inf and the highest's to +inf (the +-0.999 edge
    tests on [-1, 1]), so the probabilities of all levels sum to one. Probabilities are
    floored at 1e-12 before the log, as in the seed and improved-diffusion.
    """
    half = pixel_range.half_bin(x, bins)
    lo, hi = pixel_range.bounds(x)
    centered = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + half))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - half))
    # between the end level and its neighbour: 0.999 on [-1, 1] with 256 bins
    prob = torch.where(x < lo + half / 2, cdf_plus,
                       torch.where(x > hi - half / 2, 1.0 - cdf_min, cdf_plus - cdf_min))
    return torch.log(prob.clamp(min=1e-12))


@dataclass
class Posterior:
    """q(x_s | x_t, x0) = N(c_x0 x0 + c_xt x_t, variance) for s = t - 1, per sample ([B], float64).

    ``beta`` is the step's forward variance 1 - alpha_bar_t / alpha_bar_s (beta_t at integer
    t); ``log_variance_clipped`` replaces the zero variance at t = 1 by that of t = 2, as
    improved-diffusion does, so a fixed-small decoder has a finite scale.
    """

    c_x0: Tensor
    c_xt: Tensor
    variance: Tensor
    beta: Tensor
    log_variance_clipped: Tensor


def step_times(schedule, t: Tensor) -> Tensor:
    """The times t as float64 in [1, T] (below t = 1 the first step stands in)."""
    return t.to(torch.float64).clamp(1.0, float(schedule.num_steps))


def _alpha_bar(schedule, t: Tensor) -> Tensor:
    """alpha_bar at (possibly fractional) t in [0, T], float64."""
    exact = t == t.round()
    table = schedule.table["alpha_bar"].to(t.device)
    if bool(exact.all()):
        return table[t.round().long()]
    return schedule.levels_at(t).alpha.to(torch.float64) ** 2


def posterior(schedule, t: Tensor) -> Posterior:
    """The posterior of the step t -> t - 1 of a t-space schedule (seed 004 Theory II.1).

    At integer t the schedule's table gives it exactly:
    c_x0 = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t),
    c_xt = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t),
    variance = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t). At fractional t (levels a
    sampler chose between table entries) the same formulas hold with the step's beta =
    1 - alpha_bar_t / alpha_bar_{t-1} (Kingma et al. 2021, q(z_s | z_t, x) for s = t - 1).
    """
    t = step_times(schedule, t)
    ab_t = _alpha_bar(schedule, t)
    ab_s = _alpha_bar(schedule, t - 1.0)
    beta = (1.0 - ab_t / ab_s).clamp(min=0.0)
    one_m = (1.0 - ab_t).clamp(min=1e-300)
    c_x0 = ab_s.sqrt() * beta / one_m
    c_xt = (1.0 - beta).sqrt() * (1.0 - ab_s) / one_m
    variance = beta * (1.0 - ab_s) / one_m
    tab = schedule.table
    v2 = tab["posterior_variance"][min(2, schedule.num_steps)].to(t.device)
    clipped = torch.where(variance > 0, variance, v2)
    return Posterior(c_x0, c_xt, variance, beta, torch.log(clipped))


def prior_kl_bits(schedule, x0: Tensor) -> Tensor:
    """L_T = KL(q(x_T | x0) || N(0, I)) per sample, bits/dim (seed 003 §3.2.1)."""
    ab_T = schedule.table["alpha_bar"][-1].item()
    mean = math.sqrt(ab_T) * x0
    logvar = torch.full_like(x0, math.log(max(1.0 - ab_T, 1e-300)))
    kl = normal_kl(mean, logvar, torch.zeros_like(x0), torch.zeros_like(x0))
    return kl.flatten(1).mean(1) / LN2


def model_log_variance(variance, post: Posterior, like: Tensor, extra: Tensor | None) -> Tensor:
    """log sigma_theta^2 of the reverse step, from the recipe's variance component."""
    beta = broadcast(post.beta, like).to(like.dtype)
    beta_tilde = broadcast(post.log_variance_clipped.exp(), like).to(like.dtype)
    if extra is not None:
        extra = extra.to(like.dtype)
    return variance.log_variance(beta, beta_tilde, extra)


@dataclass
class VlbTerms:
    """One sample's bound term at its t, bits/dim ([B]), and the means it compared."""

    bits: Tensor  # L_{t-1}: KL for t >= 2, decoder NLL for t = 1
    true_mean: Tensor
    model_mean: Tensor
    is_decoder: Tensor  # [B] bool: t = 1


def vlb_term_bits(schedule, variance, x0: Tensor, x_t: Tensor, t: Tensor, x0_hat: Tensor,
                  extra: Tensor | None, pixel_range: PixelRange = UNIT_RANGE) -> VlbTerms:
    """The bound term of each sample at its own step t (integers in 1..T), bits/dim.

    mu_theta comes from x0_hat through the posterior mean (seed 003 eq. 5.2), so every
    target yields it; sigma_theta^2 comes from the variance component. t = 1 scores x0
    under the discretized Gaussian decoder with mean mu_theta(x1) = x0_hat, on the levels of
    the data's ``pixel_range``.
    """
    post = posterior(schedule, t.to(x0.device))
    dtype = x0.dtype
    c_x0, c_xt = broadcast(post.c_x0, x0).to(dtype), broadcast(post.c_xt, x0).to(dtype)
    true_mean = c_x0 * x0 + c_xt * x_t
    model_mean = c_x0 * x0_hat + c_xt * x_t
    log_var = model_log_variance(variance, post, x0, extra)
    true_log_var = broadcast(post.log_variance_clipped, x0).to(dtype)
    kl = normal_kl(true_mean, true_log_var, model_mean, log_var).flatten(1).mean(1) / LN2
    decoder = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * log_var,
                                                   pixel_range=pixel_range)
    decoder = decoder.flatten(1).mean(1) / LN2
    is_decoder = step_times(schedule, t).to(x0.device) <= 1.0
    return VlbTerms(torch.where(is_decoder, decoder, kl), true_mean, model_mean, is_decoder)
