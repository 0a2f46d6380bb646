"""Built-in training losses: the target's MSE (seed 004 Coding I.5-7), the variational bound
(seed 003 ch. 3), seed 004's mean matching (Theory I) and the hybrid of the first two
(seed 003 §6.1; Nichol & Dhariwal 2021)."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from difftk.diffusion.levels import broadcast
from difftk.diffusion.loss import Loss, LossInputs
from difftk.diffusion.vlb import posterior, prior_kl_bits, vlb_term_bits
from difftk.errors import DifftkError
from difftk.hookspecs import hookimpl

Reduction = Literal["mean", "sum"]
REDUCTION_HELP = "over the pixels of one sample: mean (default) or sum"


def _reduce(sq: torch.Tensor, reduction: str) -> torch.Tensor:
    flat = sq.flatten(1)
    return flat.mean(1) if reduction == "mean" else flat.sum(1)


def _full(x: torch.Tensor) -> torch.Tensor:
    """At least fp32 (the bound's terms lose too much in half precision); float64 stays."""
    return x if x.dtype == torch.float64 else x.float()


def _integer_t(inputs: LossInputs, schedule) -> torch.Tensor:
    t = inputs.levels.t
    if t is None or not bool(torch.all(t == t.round())):
        raise DifftkError("the variational bound sums over the integer steps t = 1..T; draw t "
                          "with noise_sampling.name = \"uniform_t\" and discrete = true")
    return t.round().clamp(1, schedule.num_steps)


class _TableLoss(Loss):
    """A loss defined through the steps of a t-space schedule's table."""

    needs_table: ClassVar[str] = "is defined by the steps t -> t - 1 of"
    without_table: ClassVar[str] = 'loss "mse"'


class MSE(Loss):
    """Weighted squared error of the target, per-pixel mean (seed 004 Coding I.5-7) or sum."""

    name = "mse"
    reduction: Reduction = Field("mean", description=REDUCTION_HELP)

    def __call__(self, inputs):
        return inputs.weight * _reduce((inputs.pred - inputs.target).square(), self.reduction)


def _vlb_bits(inputs: LossInputs, x0_hat: torch.Tensor) -> torch.Tensor:
    """One-sample estimate of the whole bound, bits/dim: T L_t + L_T with t ~ U{1..T}.

    With t uniform, E_t[T L_{t-1}] = sum_t L_{t-1} (seed 003 ch. 3 summed over t; the L_T
    term has no parameters and is added exactly), so the mean over a batch estimates the
    NLL bound of ``difftk eval --nll``.
    """
    schedule = inputs.schedule
    t = _integer_t(inputs, schedule)
    x0 = _full(inputs.x0)
    terms = vlb_term_bits(schedule, inputs.variance, x0, _full(inputs.x_t), t,
                          x0_hat.to(x0.dtype), inputs.extra, inputs.pixel_range)
    return schedule.num_steps * terms.bits + prior_kl_bits(schedule, x0)


class VLB(_TableLoss):
    """The variational bound L_T + sum_t L_t + L_0 in bits/dim, one t per sample (seed 003
    ch. 3): Gaussian KL terms (eq. 3.4) and the discretized Gaussian decoder (Algorithm 2)."""

    name = "vlb"
    trains_variance: ClassVar[bool] = True

    def __call__(self, inputs):
        x0_hat = inputs.parameterization.to_x0(inputs.pred, _full(inputs.x_t), inputs.levels)
        return _vlb_bits(inputs, x0_hat)


class Hybrid(_TableLoss):
    """L_hybrid = L_mse + lambda L_vlb with the VLB on a detached mean, so it trains only the
    variance (seed 003 §6.1, gradient isolation; Nichol & Dhariwal 2021, lambda = 0.001).

    L_vlb is the one-sample estimate T L_t + L_T in bits/dim, so lambda = 0.001 with
    T = 1000 is improved-diffusion's ``vb * T / 1000`` exactly.
    """

    name = "hybrid"
    trains_variance: ClassVar[bool] = True
    vlb_weight: float = Field(0.001, ge=0, description="lambda, the weight of the VLB term")
    reduction: Reduction = Field("mean", description="of the MSE term: " + REDUCTION_HELP)

    def __call__(self, inputs):
        mse = inputs.weight * _reduce((inputs.pred - inputs.target).square(), self.reduction)
        # Stop-gradient: the mean is a constant for the VLB term.
        x0_hat = inputs.parameterization.to_x0(inputs.pred.detach(), _full(inputs.x_t),
                                               inputs.levels)
        return mse + self.vlb_weight * _vlb_bits(inputs, x0_hat)


class MeanMatching(_TableLoss):
    """Seed 004 Theory I: ||x_{t-1} - mu_theta(x_t, t)||^2 / (2 (1 - alpha_t)) with x_{t-1}
    drawn from the posterior q(x_{t-1} | x_t, x0).

    ``estimator = "analytic"`` replaces the draw by its expectation (Theory II.2):
    (||mu_tilde - mu_theta||^2 + rho_t) / (2 (1 - alpha_t)) per pixel, same mean, no sampling
    noise; for eps-prediction it is Theory II.4's ELBO-weighted eps-MSE plus a constant.
    mu_theta comes from any target through the posterior mean.
    """

    name = "mean_matching"
    estimator: Literal["sample", "analytic"] = Field(
        "sample", description="draw x_{t-1} (Theory I) or use its posterior mean (Theory II.2)")
    reduction: Reduction = Field("mean", description=REDUCTION_HELP)

    def __call__(self, inputs):
        target = inputs.parameterization
        x0, x_t = _full(inputs.x0), _full(inputs.x_t)
        levels = inputs.levels
        post = posterior(inputs.schedule, target.times(levels).to(x0.device))
        c_x0, c_xt = broadcast(post.c_x0, x0), broadcast(post.c_xt, x0)
        var = broadcast(post.variance, x0)
        true_mean = c_x0 * x0 + c_xt * x_t
        mu_theta = target.to_mean(inputs.pred, x_t, levels).to(x0.dtype)
        if self.estimator == "sample":
            x_prev = true_mean + var.sqrt() * torch.randn_like(x0)
            sq = (x_prev - mu_theta).square()
        else:
            sq = (true_mean - mu_theta).square() + var
        # 1 - alpha_t = beta_t, the step's forward variance.
        per = _reduce(sq, self.reduction) / (2.0 * post.beta.to(x0.device, x0.dtype))
        return inputs.weight * per


@hookimpl
def register_losses(register):
    for cls in (MSE, VLB, Hybrid, MeanMatching):
        register(cls)
