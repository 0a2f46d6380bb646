"""MMSE(SNR) of x0 given x_t, measured with a denoiser on data (the input of the I-MMSE
estimator, seed 001 §3.2.1).

E||x0 - D(x_t)||^2 / D at each logSNR, over held-out x0 and fresh noise. For the Bayes
denoiser D = E[x0 | x_t] this is the MMSE; a trained network adds its own error
E||D - E[x0 | x_t]||^2 >= 0, so the measured curve can only lie above the true one.
"""

from __future__ import annotations

import numpy as np
import torch

from difftk.diffusion.levels import broadcast


@torch.no_grad()
def measure_mmse(denoiser, x0: torch.Tensor, log_snr: np.ndarray, levels_at, seed: int = 0,
                 batch_size: int = 256, labels: torch.Tensor | None = None,
                 device: torch.device | str = "cpu") -> np.ndarray:
    """Per-dimension mean squared x0 error of ``denoiser`` at each logSNR.

    ``levels_at(log_snr, n)`` gives the schedule's levels; x0 [N, ...] is held-out data.
    """
    gen = torch.Generator(device).manual_seed(seed)
    out = []
    for lam in log_snr:
        total, count = 0.0, 0
        for i in range(0, x0.shape[0], batch_size):
            x = x0[i:i + batch_size].to(device)
            lab = None if labels is None else labels[i:i + batch_size].to(device)
            levels = levels_at(float(lam), x.shape[0])
            eps = torch.randn(x.shape, generator=gen, device=device)
            x_t = broadcast(levels.alpha, x) * x + broadcast(levels.sigma, x) * eps
            x0_hat, _ = denoiser.x0_and_extra(x_t, levels, lab)
            total += float((x0_hat.double() - x.double()).square().sum())
            count += x.numel()
        out.append(total / count)
    return np.asarray(out)


def per_dimension_variance(x0: torch.Tensor) -> float:
    """E||x0 - E x0||^2 / D: the MMSE at SNR = 0."""
    x = x0.double().flatten(1)
    return float(x.var(0, unbiased=False).mean())
