"""`difftk analyze targets`: seed 000 §3's diagnostics of the four targets measured with a
trained network on the run's held-out data, at the run's own noise levels.

At each logSNR of a grid over the schedule's range, y = c x0 + d eps for x0, eps, v, score
(coefficients from the run's alpha, sigma) and the network's estimate of E[y | x_t] from its
x0 prediction (y_hat = c x0_hat + d eps_hat, eps_hat = (x_t - alpha x0_hat) / sigma):

    correlation  pooled Pearson correlation of (y, x_t)                 (model-free)
    slope        Cov(y_hat, x_t) / Var(x_t), the signed slope of E[y | x_t] (equal to
                 Cov(y, x_t) / Var(x_t) by the tower rule, with far less noise for the score)
    signal       std of y_hat                                           (the network's E[y | x_t])
    cond. var.   E (y - y_hat)^2: the network's MSE on y, which is E Var(y | x_t) plus the
                 network's own error, so an upper bound

Beside them, the closed forms for Gaussian x0 with the data's per-dimension variance at the
same (alpha, sigma).
"""

from __future__ import annotations

import numpy as np
import torch

from difftk.analysis.denoiser_mmse import per_dimension_variance
from difftk.analysis.target_diagnostics import TARGET_COEFFICIENTS, gaussian_diagnostics
from difftk.analysis.trained_run import TrainedRun
from difftk.diffusion.levels import broadcast


class _Moments:
    """Running sums for pooled statistics centred per dimension (as the data Monte Carlo of
    target_diagnostics.py centres them)."""

    def __init__(self):
        self.n = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.products: dict[str, float] = {}

    def add(self, y, x, y_hat):
        self.n += y.shape[0]
        for key, v in (("y", y), ("x", x), ("y_hat", y_hat)):
            total = v.sum(0)
            self.sums[key] = self.sums[key] + total if key in self.sums else total
        for key, v in (("yy", y * y), ("xx", x * x), ("xy", y * x), ("hh", y_hat * y_hat),
                       ("hx", y_hat * x), ("err", (y - y_hat) ** 2)):
            self.products[key] = self.products.get(key, 0.0) + float(v.sum())

    def centred(self, a: str, b: str, product: str) -> float:
        """Mean over items and dimensions of (a - mean_a)(b - mean_b), means per dimension."""
        n, dims = self.n, self.sums[a].numel()
        return (self.products[product] - float((self.sums[a] * self.sums[b]).sum()) / n) / (n * dims)

    def mean(self, product: str) -> float:
        return self.products[product] / (self.n * self.sums["y"].numel())


@torch.no_grad()
def run_target_rows(run: TrainedRun, points: int = 13, seed: int = 0,
                    batch_size: int = 256) -> list[dict]:
    lo, hi = run.log_snr_range()
    log_snr = np.linspace(lo, hi, points)
    times = run.times(log_snr)
    s = per_dimension_variance(run.heldout) ** 0.5
    gen = torch.Generator(run.device).manual_seed(seed)
    rows = []
    for i, lam in enumerate(log_snr):
        one = run.levels_at_log_snr(float(lam), 1)
        a, b = one.alpha.double().cpu(), one.sigma.double().cpu()
        coefficients = {t: tuple(float(v) for v in f(a, b)) for t, f in TARGET_COEFFICIENTS.items()}
        moments = {t: _Moments() for t in TARGET_COEFFICIENTS}
        for j in range(0, run.heldout.shape[0], batch_size):
            x0 = run.heldout[j:j + batch_size].to(run.device)
            levels = run.levels_at_log_snr(float(lam), x0.shape[0])
            alpha, sigma = broadcast(levels.alpha, x0), broadcast(levels.sigma, x0)
            eps = torch.randn(x0.shape, generator=gen, device=run.device)
            x_t = alpha * x0 + sigma * eps
            labels = run.labels_for(torch.arange(j, j + x0.shape[0]))
            x0_hat = run.denoiser.x0_and_extra(x_t, levels, labels)[0].double().flatten(1)
            x0d, eps_d, xd = x0.double().flatten(1), eps.double().flatten(1), x_t.double().flatten(1)
            eps_hat = (xd - float(a) * x0_hat) / float(b)
            for target, (c, d) in coefficients.items():
                moments[target].add(c * x0d + d * eps_d, xd, c * x0_hat + d * eps_hat)
        for target, m in moments.items():
            cov, var_x, var_y = m.centred("y", "x", "xy"), m.centred("x", "x", "xx"), \
                m.centred("y", "y", "yy")
            common = {"target": target, "snr": float(np.exp(lam)), "t": float(times[i])}
            rows.append({"source": "network", **common,
                         "correlation": cov / max(var_x * var_y, 1e-300) ** 0.5,
                         "slope": m.centred("y_hat", "x", "hx") / var_x,
                         "signal": max(m.centred("y_hat", "y_hat", "hh"), 0.0) ** 0.5,
                         "conditional_variance": m.mean("err")})
            closed = gaussian_diagnostics(target, a, b, s)
            rows.append({"source": "gaussian", **common,
                         **{k: float(v[0]) for k, v in closed.items()}})
    return rows
