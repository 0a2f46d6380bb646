"""The two views of one objective (seed 001 §5.2): a loss weighting w under uniform t, and
a noise-level distribution q proportional to w p under uniform weight (noise_sampling
``from_weighting``). E_p[w l] = E_q[(w p / q) l], so both give the same expected gradient;
what differs is its variance, which this measures.

For each view, K minibatch gradients of the mean loss are drawn at fixed weights (fresh
data, noise levels and noise each time, from one seed); the report gives the mean gradient
of each view, the standard error of their difference along the mean's direction, and the
total variance tr Cov of each view's minibatch gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DualityReport:
    relative_difference: float  # ||mean_A - mean_B|| / ||mean_A||
    difference_in_standard_errors: float  # the difference along mean_A, in its standard errors
    variance_weighting: float  # tr Cov of the minibatch gradient, weighting view
    variance_sampling: float  # the same, sampling view
    draws: int

    @property
    def variance_ratio(self) -> float:
        """tr Cov(sampling view) / tr Cov(weighting view): below 1 when sampling by w wins."""
        return self.variance_sampling / self.variance_weighting


def minibatch_gradients(denoiser, objective, data: torch.Tensor, draws: int, batch: int,
                        seed: int) -> torch.Tensor:
    """[draws, P] flattened gradients of the batch-mean loss at the current weights."""
    params = [p for p in denoiser.parameters() if p.requires_grad]
    gen = torch.Generator(data.device).manual_seed(seed)
    rows = []
    for _ in range(draws):
        index = torch.randint(0, data.shape[0], (batch,), generator=gen, device=data.device)
        per_sample, _ = objective(denoiser, data[index], None, gen)
        grads = torch.autograd.grad(per_sample.mean(), params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).double())
    return torch.stack(rows)


def compare_views(denoiser, weighting_view, sampling_view, data: torch.Tensor, *,
                  draws: int = 200, batch: int = 64, seed: int = 0) -> DualityReport:
    """The same expected gradient (within Monte Carlo error), and each view's variance."""
    a = minibatch_gradients(denoiser, weighting_view, data, draws, batch, seed)
    b = minibatch_gradients(denoiser, sampling_view, data, draws, batch, seed + 1)
    mean_a, mean_b = a.mean(0), b.mean(0)
    direction = mean_a / mean_a.norm()
    proj_a, proj_b = a @ direction, b @ direction
    se = ((proj_a.var() + proj_b.var()) / draws).sqrt()
    return DualityReport(
        relative_difference=float((mean_a - mean_b).norm() / mean_a.norm()),
        difference_in_standard_errors=float((proj_a.mean() - proj_b.mean()).abs() / se),
        variance_weighting=float(a.var(0).sum()), variance_sampling=float(b.var(0).sum()),
        draws=draws)
