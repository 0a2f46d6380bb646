"""`difftk analyze variance-gradients`: the gradient a trained run's learned variance receives
at each step t (seed 003 §4.2-4.3, eq. 4.2 and 4.4), measured as training measures it
(analysis/variance_gradients.py) with the run's own objective on held-out items."""

from __future__ import annotations

import numpy as np
import torch

from difftk.analysis.trained_run import TrainedRun
from difftk.analysis.variance_gradients import NAMES, VarianceGradientProbe
from difftk.diffusion.objective import Objective
from difftk.errors import DifftkError


def variance_gradient_rows(run: TrainedRun, points: int, samples: int, seed: int) -> list[dict]:
    """Per step t (``points`` steps spaced geometrically over 1..T): the median and mean over
    ``samples`` held-out items of |dL/d out|, |dL/d log sigma^2| and |dL/d sigma^2|, L being
    each item's training loss at that t."""
    den, schedule = run.denoiser, run.schedule
    if not den.variance.learned:
        raise DifftkError(f'the run\'s variance "{den.variance.name}" is fixed: no gradient '
                          "reaches it; this analysis needs a learned variance")
    p = run.recipe.parts
    objective = Objective.for_denoiser(den, p["weight"], p["noise_sampling"], p["loss"])
    T = schedule.num_steps
    steps = sorted({int(round(t)) for t in np.geomspace(1, T, points)})
    n = min(samples, run.heldout.shape[0])
    x0 = run.heldout[:n].to(run.device).float()
    labels = run.labels_for(torch.arange(n))
    probe = VarianceGradientProbe(den)
    gen = torch.Generator(run.device).manual_seed(seed)
    rows = []
    wanted = [q.requires_grad for q in den.parameters()]
    den.requires_grad_(True)  # a restored model is frozen; the head's gradient needs a graph
    try:
        for t in steps:
            levels = schedule.levels_at(torch.full((n,), t)).to(run.device)
            with torch.enable_grad():
                per_sample, _ = objective(den, x0, labels, gen, levels=levels)
            per_sample.float().sum().backward()
            figures = probe.take(1.0)
            den.zero_grad(set_to_none=True)
            row = {"t": t, "log_snr": float(levels.log_snr[0]),
                   "ln_sigma_edm": float(torch.log(levels.sigma_edm[0]))}
            for i, name in enumerate(NAMES):
                column = figures[:, i]
                column = column[torch.isfinite(column)]
                row[f"median_abs_d_{name}"] = float(column.median()) if len(column) else float("nan")
                row[f"mean_abs_d_{name}"] = float(column.mean()) if len(column) else float("nan")
            rows.append(row)
    finally:
        probe.close()
        for q, flag in zip(den.parameters(), wanted, strict=True):
            q.requires_grad_(flag)
    return rows


def draw_variance_gradients(rows: list[dict], title: str):
    """|dL/d sigma^2| and |dL/d log sigma^2| (medians over items) against t, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    t = [r["t"] for r in rows]
    ax.plot(t, [r["median_abs_d_variance"] for r in rows], marker="o", ms=3,
            label=r"$|\partial L / \partial \sigma_\theta^2|$ (seed 003 eq. 4.2)")
    ax.plot(t, [r["median_abs_d_log_variance"] for r in rows], marker="o", ms=3,
            label=r"$|\partial L / \partial \log \sigma_\theta^2|$ (eq. 4.4)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel("median over items")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
