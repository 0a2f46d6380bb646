"""Seed 000 §3.3's claim measured: near the optimum the per-sample gradient variance of a
target's MSE is proportional to Var(y | x_t), the target's irreducible noise.

`difftk analyze gradient-noise` measures both on one trained run: the gradient variance
E||g - E g||^2 per noise-level bucket and target (analysis/gradient_variance.py, what
`analyze gradients` reports) and the network's E (y - y_hat)^2 per target on a logSNR grid
(analysis/run_target_diagnostics.py, what `analyze targets` reports: E Var(y | x_t) plus the
network's own error). Var(y | x_t) is read at each bucket's median logSNR (linear
interpolation of its logarithm), and per target a line is fitted to
log(gradient variance) = a + b log Var(y | x_t) over the buckets: b = 1 is the seed's
proportionality, R^2 how much of the spread across noise levels it explains.
"""

from __future__ import annotations

import numpy as np

FIT_TARGETS = ("x0", "eps", "v", "score")


def conditional_variance_at(target_rows: list[dict], target: str, log_snr: np.ndarray) -> np.ndarray:
    """The network's E (y - y_hat)^2 for ``target`` at ``log_snr`` (log-linear interpolation
    of the `analyze targets` rows; clamped to the grid's ends)."""
    rows = sorted((r for r in target_rows if r["source"] == "network" and r["target"] == target),
                  key=lambda r: r["snr"])
    if not rows:
        raise ValueError(f"no conditional variance rows for the target {target}")
    grid = np.log([r["snr"] for r in rows])
    values = np.log([max(r["conditional_variance"], 1e-300) for r in rows])
    return np.exp(np.interp(log_snr, grid, values))


def log_log_fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least squares log y = a + b log x: the slope b, intercept a and R^2 (positive x, y)."""
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (intercept + slope * lx)
    total = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - float((residual**2).sum() / total) if total > 0 else float("nan")
    return {"slope": float(slope), "intercept": float(intercept), "r2": r2}


def gradient_noise_fit(gradient_rows: list[dict], target_rows: list[dict],
                       targets=FIT_TARGETS) -> tuple[list[dict], list[dict]]:
    """(points, fits): per (target, bucket) the gradient variance beside Var(y | x_t) at the
    bucket's median logSNR, and per target the log-log fit over its buckets."""
    points, fits = [], []
    for target in targets:
        rows = [r for r in gradient_rows if r["target"] == target and r["grad_variance"] > 0]
        if len(rows) < 3:
            continue
        mid = np.array([r["log_snr_mid"] for r in rows])
        cond = conditional_variance_at(target_rows, target, mid)
        grad = np.array([r["grad_variance"] for r in rows])
        for r, c in zip(rows, cond, strict=True):
            points.append({"target": target, "bucket": r["bucket"], "log_snr_mid": r["log_snr_mid"],
                           "conditional_variance": float(c), "grad_variance": r["grad_variance"]})
        fits.append({"target": target, "buckets": len(rows), **log_log_fit(cond, grad),
                     "log_snr_lo": float(mid.min()), "log_snr_hi": float(mid.max())})
    return points, fits


def draw_gradient_noise(points: list[dict], fits: list[dict], title: str):
    """Gradient variance against Var(y | x_t) per target, log-log, with each fitted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for k, fit in enumerate(fits):
        mine = [p for p in points if p["target"] == fit["target"]]
        x = np.array([p["conditional_variance"] for p in mine])
        y = np.array([p["grad_variance"] for p in mine])
        ax.scatter(x, y, color=f"C{k}", s=14)
        line = np.geomspace(x.min(), x.max(), 20)
        ax.plot(line, np.exp(fit["intercept"]) * line ** fit["slope"], color=f"C{k}",
                label=f"{fit['target']}: slope {fit['slope']:.2f}, R² {fit['r2']:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Var(y | x_t) (network's E (y - ŷ)², at the bucket's logSNR)")
    ax.set_ylabel("per-sample gradient variance E‖g - E g‖²")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
