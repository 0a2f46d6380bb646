"""The denoiser as a sampler calls it: class labels bound, classifier-free guidance applied,
network evaluations counted.

Classifier-free guidance (Ho & Salimans 2022) combines a conditional and an unconditional
(null-label) prediction: D = D_u + s (D_c - D_u). Seed 001 §12.4 writes the same rule as
eps = eps_c + w (eps_c - eps_u), so w = s - 1; s = 1 is plain conditional sampling and
s = 0 unconditional. At a fixed x_t the map x0 -> eps is affine, and an affine
combination whose weights sum to one commutes with it, so guiding x0 is guiding eps (or
v, or the score). The combination runs in fp32 or wider (seed 001 §12.4: the subtraction
and the amplification by s magnify rounding error).
"""

from __future__ import annotations

import torch
from torch import Tensor

from difftk.diffusion.levels import Levels, broadcast


def as_labels(labels, n: int, device) -> Tensor | None:
    """None, or n class indices from one class, a list (cycled over the batch) or a tensor."""
    if labels is None:
        return None
    if isinstance(labels, int):
        return torch.full((n,), labels, dtype=torch.long, device=device)
    values = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if values.numel() == 0:
        raise ValueError("an empty list of labels")
    return values.repeat((n + values.numel() - 1) // values.numel())[:n].to(device)


def cfg_combine(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """D_u + s (D_c - D_u), computed in fp32 or wider whatever the inputs' precision."""
    dtype = torch.promote_types(torch.promote_types(cond.dtype, uncond.dtype), torch.float32)
    c, u = cond.to(dtype), uncond.to(dtype)
    return u + scale * (c - u)


class GuidedModel:
    """Calls a Denoiser at one noise level for a whole batch; counts evaluations per sample."""

    def __init__(self, denoiser, labels: Tensor | None, guidance: float = 1.0):
        self.denoiser = denoiser
        self.schedule = denoiser.schedule
        self.variance = denoiser.variance
        self.labels = labels
        self.guidance = float(guidance)
        self.nfe = 0

    def _evaluate(self, x_t: Tensor, levels: Levels, labels: Tensor | None):
        self.nfe += 1
        return self.denoiser.x0_and_extra(x_t, levels, labels)

    def x0(self, x_t: Tensor, levels: Levels) -> tuple[Tensor, Tensor | None]:
        """(x0 estimate, variance channels) for x_t at ``levels``; x0 in x_t's dtype."""
        x_in = x_t.float()
        if self.labels is None or self.guidance == 0.0:
            x0, extra = self._evaluate(x_in, levels, None)
        elif self.guidance == 1.0:
            x0, extra = self._evaluate(x_in, levels, self.labels)
        else:
            cond, extra = self._evaluate(x_in, levels, self.labels)
            uncond, _ = self._evaluate(x_in, levels, None)  # a guided step costs two calls
            x0 = cfg_combine(cond, uncond, self.guidance)
        return x0.to(x_t.dtype), extra

    def at(self, x_t: Tensor, alpha: float, sigma: float, t: float | None = None
           ) -> tuple[Tensor, Tensor | None]:
        """x0 and variance channels at the level (alpha, sigma) with schedule time t."""
        n, dev = x_t.shape[0], x_t.device
        levels = Levels(alpha=torch.full((n,), alpha, device=dev),
                        sigma=torch.full((n,), sigma, device=dev),
                        t=None if t is None else torch.full((n,), t, device=dev))
        return self.x0(x_t, levels)

    def edm(self, x: Tensor, sigma_edm: float, t: float | None = None) -> Tensor:
        """D(x; sigma) in EDM's coordinates x = x_t / alpha (Karras et al. 2022).

        The level comes from the schedule; ``t`` overrides its time where the grid knows it.
        """
        one = self.schedule.levels_from_sigma_edm(torch.tensor([sigma_edm], dtype=torch.float64))
        n, dev = x.shape[0], x.device
        time = one.t if t is None else torch.tensor([t])
        levels = Levels(alpha=one.alpha.to(dev).expand(n), sigma=one.sigma.to(dev).expand(n),
                        t=None if time is None else time.float().to(dev).expand(n))
        x_t = broadcast(levels.alpha.double(), x) * x
        x0, _ = self.x0(x_t, levels)
        return x0.to(x.dtype)


def drop_labels(labels: Tensor, p: float, null: int, generator: torch.Generator) -> Tensor:
    """Replace each label by the null label with probability p (label dropout, Ho & Salimans
    2022), so one network learns both p(x | c) and p(x) for classifier-free guidance."""
    if p <= 0:
        return labels
    drop = torch.rand(labels.shape, generator=generator, device=labels.device) < p
    return torch.where(drop, torch.full_like(labels, null), labels)
