"""Seed 003 Figure 6.4: the ratio of the two fixed reverse variances, beta_t / beta_tilde_t,
across the steps of a t-space schedule.

beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) is the posterior variance
(the lower bound, "fixed_small") and beta_t the forward variance (the upper bound,
"fixed_large"; seed 003 §6.2, eq. 6.2), so the ratio is (1 - alpha_bar_t) / (1 - alpha_bar_{t-1}):
large over the first steps and near 1 after them, which is why the learned-range
interpolation between the two matters only early. At t = 1 beta_tilde is 0 and the ratio is
infinite, so the curve starts at t = 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class VarianceRatioCurve:
    label: str
    t: np.ndarray
    beta: np.ndarray
    beta_tilde: np.ndarray

    @property
    def ratio(self) -> np.ndarray:
        return self.beta / self.beta_tilde


def variance_ratio_curve(label: str, schedule) -> VarianceRatioCurve:
    """beta_t and beta_tilde_t for t = 2..T from the schedule's table (float64)."""
    table = schedule.table
    T = schedule.num_steps
    t = np.arange(2, T + 1)
    return VarianceRatioCurve(label, t, table["betas"].numpy()[t - 1],
                              table["posterior_variance"].numpy()[t])


def variance_ratio_rows(curves: list[VarianceRatioCurve]) -> list[dict]:
    return [{"schedule": c.label, "t": int(c.t[i]), "t_over_T": float(c.t[i] / c.t[-1]),
             "beta": float(c.beta[i]), "beta_tilde": float(c.beta_tilde[i]),
             "ratio": float(c.ratio[i])} for c in curves for i in range(len(c.t))]


def draw_variance_ratio(curves: list[VarianceRatioCurve]):
    """The ratio against t (log scale), and against t / T for schedules of different T."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k, c in enumerate(curves):
        axes[0].plot(c.t, c.ratio, color=f"C{k}", label=c.label)
        axes[1].plot(c.t / c.t[-1], c.ratio, color=f"C{k}", label=c.label)
    axes[0].set_xlabel("t")
    axes[0].set_xscale("log")
    axes[1].set_xlabel("t / T")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylabel("beta_t / beta_tilde_t")
        ax.axhline(1.0, color="k", lw=0.6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Ratio of the forward variance to the posterior variance (seed 003 Figure 6.4)")
    fig.tight_layout()
    return fig
