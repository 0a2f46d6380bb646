"""The gradient that reaches a learned variance, by noise level (seed 003 §4.2-4.3).

Seed 003 eq. 4.2 writes the bound's derivative with respect to sigma_theta^2,
1/2 [1/sigma^2 - sigma_hat^2/sigma^4 - (mu_hat - mu)^2/sigma^4], which grows as 1/sigma^4 as
the variance shrinks, and eq. 4.4 the derivative with respect to s = log sigma_theta^2,
1/2 [1 - sigma_hat^2/sigma^2 - (mu_hat - mu)^2/sigma^2], smaller by the factor sigma^2
(d/ds = sigma^2 d/dsigma^2). A run with a learned variance measures both during training,
from autograd rather than the formulas: a tensor hook on the variance channels of each
forward pass keeps dL/d(out), the gradient the head receives, and the chain rule through
the recipe's variance parameterisation gives dL/d(log sigma^2) = dL/d(out) / (d log sigma^2 /
d out) and dL/d(sigma^2) = dL/d(log sigma^2) / sigma^2. Per sample the mean absolute value
over the channels is kept, with the loss unscaled (fp16) and undivided by the batch, so
each figure is the derivative of that sample's own loss.

``learned`` (sigma^2 = |out + beta|) receives eq. 4.2's gradient, ``learned_log`` eq. 4.4's,
``learned_range`` (Nichol & Dhariwal 2021) a gradient scaled by (log beta - log beta_tilde)/2,
which vanishes where the two fixed variances meet; there the chain rule is undefined and
the element is left out.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difftk.diffusion.levels import broadcast
from difftk.diffusion.vlb import posterior

# columns of the per-sample figures
HEAD, LOG_VARIANCE, VARIANCE = 0, 1, 2
NAMES = ("head_output", "log_variance", "variance")
SLOPE_FLOOR = 1e-12  # below it d log sigma^2 / d out is taken as zero (learned_range's ends)


class VarianceGradientProbe:
    """Keeps, for each forward pass of ``denoiser`` with gradients on, the variance channels,
    their levels and (after backward) their gradient; ``take`` turns them into figures."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self._records: list[dict] = []
        self._handle = denoiser.register_forward_hook(self._keep, with_kwargs=True)

    def close(self) -> None:
        self._handle.remove()

    def _keep(self, module, args, kwargs, output) -> None:
        extra = getattr(output, "extra", None)
        if extra is None or not extra.requires_grad:
            return
        levels = args[1] if len(args) > 1 else kwargs["levels"]
        record = {"extra": extra.detach(), "levels": levels, "grad": None}

        def keep_gradient(grad: Tensor) -> None:
            record["grad"] = grad.detach()

        extra.register_hook(keep_gradient)
        self._records.append(record)

    def take(self, per_sample_scale: float) -> Tensor | None:
        """[B, 3] per sample: mean |dL/d out|, |dL/d log sigma^2|, |dL/d sigma^2| of the
        forward passes since the last call (micro-batches in order), where L is the sample's
        loss: the gradients kept are multiplied by ``per_sample_scale`` (the slice size over
        the loss scale). None when nothing was kept."""
        records, self._records = [r for r in self._records if r["grad"] is not None], []
        if not records:
            return None
        return torch.cat([variance_gradients(self.denoiser.variance, self.denoiser.schedule,
                                             r["levels"], r["extra"], r["grad"] * per_sample_scale)
                          for r in records])


def variance_gradients(variance, schedule, levels, extra: Tensor, grad_extra: Tensor) -> Tensor:
    """Per sample the mean absolute dL/d out, dL/d log sigma^2 and dL/d sigma^2 ([B, 3],
    float64) from the variance channels ``extra`` and the loss's gradient with respect to
    them, through ``variance``'s parameterisation at ``levels`` (a t-space schedule's)."""
    post = posterior(schedule, levels.t.to(extra.device))
    out = extra.detach().double().requires_grad_(True)
    beta = broadcast(post.beta, out)
    beta_tilde = broadcast(post.log_variance_clipped.exp(), out)
    with torch.enable_grad():
        log_var = variance.log_variance(beta, beta_tilde, out)
        (slope,) = torch.autograd.grad(log_var.sum(), out)
    g = grad_extra.double()
    defined = slope.abs() > SLOPE_FLOOR
    d_log_var = torch.where(defined, g / torch.where(defined, slope, 1.0), torch.nan)
    d_var = d_log_var * torch.exp(-log_var.detach())
    columns = [g.abs(), d_log_var.abs(), d_var.abs()]
    return torch.stack([c.flatten(1).nanmean(1) for c in columns], dim=1)
