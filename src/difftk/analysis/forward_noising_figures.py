"""Seed 003 Figure 1.2: the forward process on real data, as the training pairs a denoiser
learns from: clean x0, and at each chosen t the pair (x_s, x_t) one step apart.

x_s ~ q(x_s | x0) = N(alpha_s x0, sigma_s^2 I), then one forward transition
x_t = (alpha_t / alpha_s) x_s + sqrt(sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2) z, so
(x_s, x_t) is a draw of the joint the seed describes (the network sees x_t and learns about
the less noisy x_s). The step s = t - 1 on a t-space schedule's table; on a sigma-space
schedule one thousandth of its time axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ForwardPairs:
    times: list[float]
    previous: list[float]
    x0: torch.Tensor  # [N, ...]
    x_prev: list[torch.Tensor]  # per time: [N, ...]
    x_t: list[torch.Tensor]
    alpha: list[float]
    sigma: list[float]


def _alpha_sigma(schedule, t: float) -> tuple[float, float]:
    if t <= schedule.time_range()[0] - 1 + 1e-12 and schedule.has_table:
        return 1.0, 0.0  # t = 0: the data itself
    a, s = schedule.alpha_sigma(torch.tensor([t], dtype=torch.float64))
    return float(a[0]), float(s[0])


def forward_pairs(x0: torch.Tensor, schedule, times: list[float],
                  generator: torch.Generator) -> ForwardPairs:
    """Draw (x_s, x_t) for every chosen t from the same x0 (float64 arithmetic)."""
    lo, hi = schedule.time_range()
    step = 1.0 if schedule.has_table else (hi - lo) / 1000
    x = x0.double()
    out = ForwardPairs(list(times), [], x0, [], [], [], [])
    for t in times:
        s = max(t - step, lo - 1 if schedule.has_table else lo)
        a_s, sg_s = _alpha_sigma(schedule, s)
        a_t, sg_t = _alpha_sigma(schedule, t)
        ratio = a_t / a_s
        step_var = max(sg_t**2 - ratio**2 * sg_s**2, 0.0)
        x_s = a_s * x + sg_s * torch.randn(x.shape, generator=generator, dtype=torch.float64)
        x_t = ratio * x_s + step_var**0.5 * torch.randn(x.shape, generator=generator,
                                                         dtype=torch.float64)
        out.previous.append(s)
        out.x_prev.append(x_s.float())
        out.x_t.append(x_t.float())
        out.alpha.append(a_t)
        out.sigma.append(sg_t)
    return out


def forward_rows(pairs: ForwardPairs) -> list[dict]:
    """Per chosen t: alpha, sigma, logSNR, and the measured std of x_t and its correlation
    with x0 (alpha s / sqrt(alpha^2 s^2 + sigma^2) for data of std s)."""
    rows = []
    x0 = pairs.x0.double().flatten()
    for i, t in enumerate(pairs.times):
        xt = pairs.x_t[i].double().flatten()
        corr = float(torch.corrcoef(torch.stack([x0, xt]))[0, 1])
        a, s = pairs.alpha[i], pairs.sigma[i]
        rows.append({"t": t, "previous_t": pairs.previous[i], "alpha": a, "sigma": s,
                     "log_snr": float(2 * np.log(a / s)) if a > 0 and s > 0 else
                     (float("inf") if s == 0 else float("-inf")),
                     "std_x_t": float(xt.std()), "correlation_with_x0": corr})
    return rows


def draw_forward_pairs(pairs: ForwardPairs, title: str, pixel_range=None):
    """Images: one row per item, columns x0 then (x_s, x_t) per chosen t. Vectors: one
    scatter panel per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from difftk.eval.figures import image_grid

    labels = ["x0"]
    columns = [pairs.x0]
    for t, s, xs, xt in zip(pairs.times, pairs.previous, pairs.x_prev, pairs.x_t, strict=True):
        labels += [f"t={s:g}", f"t={t:g}"]
        columns += [xs, xt]
    if pairs.x0.dim() == 4:
        n = pairs.x0.shape[0]
        tiles = torch.stack(columns, 1).reshape(n * len(columns), *pairs.x0.shape[1:])
        from difftk.diffusion.pixel_range import UNIT_RANGE

        grid = image_grid(tiles, nrow=len(columns), pixel_range=pixel_range or UNIT_RANGE)
        fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 1, 1.1 * n + 1))
        ax.imshow(grid)
        width = grid.shape[1] / len(columns)
        ax.set_xticks([(k + 0.5) * width for k in range(len(columns))])
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_yticks([])
    else:
        fig, axes = plt.subplots(1, len(columns), figsize=(2.4 * len(columns), 2.8),
                                 squeeze=False)
        for ax, x, label in zip(axes[0], columns, labels, strict=True):
            p = x.numpy()
            ax.scatter(p[:, 0], p[:, 1], s=1)
            ax.set_title(label, fontsize=9)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{title}\ncolumns: x0, then pairs (x one step before t, x at t)", fontsize=10)
    fig.tight_layout()
    return fig
