"""The likelihood by importance sampling over whole forward trajectories, and its variance
(seed 003 eq. 1.29-1.30; the K-sample bound of Burda et al. 2016, IWAE eq. 8).

    p(x0) = E_{q(x_{1:T} | x0)} [w],   w = p_theta(x_{0:T}) / q(x_{1:T} | x0)
    log w = log N(x_T; 0, I) + sum_{t=2}^T log p_theta(x_{t-1} | x_t) + log P_theta(x0 | x1)
            - sum_{t=1}^T log q(x_t | x_{t-1})

E[log w] is the ELBO (seed 003 eq. 2.2-2.5, Jensen's step; eval/nll.py sums it in closed form, term by term);
log of the mean of K weights, L_K, is a tighter bound that rises to log p(x0) as K grows
(Burda et al. 2016, Theorem 1). The seed's point is the variance: the log-weights of a
trajectory spread over tens of nats, so one weight dominates the mean, the estimate of
p(x0) has enormous relative variance, and the ELBO's Jensen step trades a little bias for
an estimator that can be trained. The report measures that spread (the log-weights' standard
deviation and the effective sample size, (sum w)^2 / sum w^2) beside L_1 (the Monte-Carlo
ELBO) and L_K, in bits/dim on the decoder's 8-bit bins, as the bound is.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difftk.diffusion.levels import broadcast
from difftk.diffusion.pixel_range import UNIT_RANGE, PixelRange
from difftk.diffusion.vlb import discretized_gaussian_log_likelihood, model_log_variance, posterior

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(x: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """log N(x; mean, e^log_var), summed over all but the first dimension, float64."""
    x, mean, log_var = x.double(), mean.double(), log_var.double()
    dens = -0.5 * ((x - mean) ** 2 * torch.exp(-log_var) + log_var + LOG_2PI)
    return dens.flatten(1).sum(1)


@torch.no_grad()
def trajectory_log_weights(denoiser, x0: Tensor, generator: torch.Generator,
                           pixel_range: PixelRange = UNIT_RANGE) -> Tensor:
    """log w of one forward trajectory x_1, ..., x_T ~ q(x_{1:T} | x0) per row of ``x0``
    (float64, [B], nats). The trajectory is drawn step by step upward, and each step's model
    term log p_theta(x_{t-1} | x_t) is evaluated as x_t appears, so no trajectory is stored."""
    schedule = denoiser.schedule
    T = schedule.num_steps
    b = x0.shape[0]
    log_w = torch.zeros(b, dtype=torch.float64, device=x0.device)
    previous = x0
    for t in range(1, T + 1):
        tt = torch.full((b,), t, device=x0.device, dtype=torch.long)
        post = posterior(schedule, tt)
        beta = broadcast(post.beta, x0)
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
        x_t = (1.0 - beta).sqrt() * previous + beta.sqrt() * noise
        log_w -= gaussian_log_density(x_t, (1.0 - beta).sqrt() * previous, beta.log())
        levels = schedule.levels_at(tt).to(x0.device)
        prediction = denoiser(x_t, levels)
        x0_hat = pixel_range.clamp(denoiser.target.to_x0(prediction.pred.float(), x_t, levels))
        mean = broadcast(post.c_x0, x0) * x0_hat + broadcast(post.c_xt, x0) * x_t
        log_var = model_log_variance(denoiser.variance, post, x0, prediction.extra)
        if t == 1:
            log_w += discretized_gaussian_log_likelihood(
                x0, mean, 0.5 * log_var, pixel_range=pixel_range).double().flatten(1).sum(1)
        else:
            log_w += gaussian_log_density(previous, mean, log_var)
        previous = x_t
    return log_w + gaussian_log_density(previous, torch.zeros_like(previous),
                                        torch.zeros_like(previous))


def bound_of_first(log_w: Tensor, k: int) -> Tensor:
    """L_k per image from the first k of its log-weights ([N, K] -> [N]): log mean_k w."""
    return torch.logsumexp(log_w[:, :k], dim=1) - math.log(k)


@torch.no_grad()
def importance_nll_bits_per_dim(denoiser, x0: Tensor, *, samples: int, batch_size: int,
                                generator: torch.Generator,
                                pixel_range: PixelRange | None = None) -> dict[str, float]:
    """L_1 (the ELBO by Monte Carlo) and the K-sample bound L_K over ``samples`` trajectories
    per image, in bits/dim averaged over ``x0`` (lower is better; L_K <= L_1 in expectation),
    with L_k for every power of two k below K, and the spread of the weights:

    - ``log_weight_std_nats``: the standard deviation of log w over one image's trajectories,
      averaged over images;
    - ``effective_sample_size``: (sum w)^2 / sum w^2 per image, averaged (K when the weights
      are equal, 1 when one dominates);
    - ``elbo_estimate_std_bpd``: the standard deviation of one trajectory's -log w in bits/dim
      (the spread of the single-sample ELBO estimate, per image, averaged).
    """
    pixel_range = pixel_range or UNIT_RANGE
    if not getattr(denoiser.schedule, "has_table", False):
        raise ValueError("importance sampling over trajectories needs a t-space schedule's table")
    dims = x0[0].numel()
    to_bits = 1.0 / (dims * math.log(2.0))
    per_batch = max(1, batch_size // samples)
    rows = []
    for i in range(0, x0.shape[0], per_batch):
        xb = x0[i:i + per_batch].float()
        repeated = xb.repeat_interleave(samples, dim=0)
        rows.append(trajectory_log_weights(denoiser, repeated, generator, pixel_range)
                    .reshape(xb.shape[0], samples).cpu())
    log_w = torch.cat(rows)
    ks = sorted({2 ** j for j in range(int(math.log2(samples)) + 1)} | {samples})
    report = {f"bound_k{k}_bpd": float(-bound_of_first(log_w, k).mean()) * to_bits for k in ks}
    weights = torch.softmax(log_w, dim=1)  # w / sum w, per image
    report |= {
        "importance_samples": samples,
        "elbo_bpd": float(-log_w.mean()) * to_bits,
        "iwae_bpd": report[f"bound_k{samples}_bpd"],
        "log_weight_std_nats": float(log_w.std(dim=1).mean()) if samples > 1 else 0.0,
        "effective_sample_size": float((1.0 / weights.square().sum(dim=1)).mean()),
        "elbo_estimate_std_bpd": float(log_w.std(dim=1).mean()) * to_bits if samples > 1 else 0.0,
    }
    return report
