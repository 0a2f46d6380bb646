"""Seed 000 §3: why targets differ. For each target y = c x0 + d eps and noise level, four
numbers: the correlation of y with x_t (§3.1), the strength of the learnable signal E[y | x_t]
(§3.2) with its signed slope on x_t, and the irreducible conditional variance E Var(y | x_t)
(§3.3).

Closed forms for Gaussian x0 ~ N(0, s^2) per dimension (x_t = a x0 + b eps):

    Var y = c^2 s^2 + d^2,  Var x_t = a^2 s^2 + b^2,  Cov(y, x_t) = c a s^2 + d b
    correlation = Cov / sqrt(Var y Var x_t)
    signal      = sqrt(Var E[y | x_t]) = |Cov| / sqrt(Var x_t)
    slope       = Cov / Var x_t   (E[y | x_t] = slope x_t; the seed's b, a, 0, -1, signed)
    cond. var.  = Var y - Cov^2 / Var x_t = s^2 (c b - d a)^2 / Var x_t

For s = 1 on a variance-preserving process these are the seed's curves (the signal is the
magnitude of its conditional-mean slope b, a, 0, -1; the score's is negative). Monte Carlo
on a finite data set uses its exact posterior: x0 is one of the N points, so E[x0 | x_t] is a softmax-weighted
average of them, and y = (c - d a / b) x0 + (d / b) x_t gives E[y | x_t] and Var(y | x_t).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# (c, d) with y = c x0 + d eps, as functions of (a, b) (seed 000 §2).
TARGET_COEFFICIENTS = {
    "x0": lambda a, b: (torch.ones_like(a), torch.zeros_like(a)),
    "eps": lambda a, b: (torch.zeros_like(a), torch.ones_like(a)),
    "v": lambda a, b: (-b, a),
    "score": lambda a, b: (torch.zeros_like(a), -1.0 / b),
}
METRICS = ("correlation", "slope", "signal", "conditional_variance")


def vp_levels(snr: Tensor) -> tuple[Tensor, Tensor]:
    """(a, b) of a variance-preserving process at the given SNR (float64)."""
    snr = snr.to(torch.float64)
    return (snr / (1 + snr)).sqrt(), (1 / (1 + snr)).sqrt()


def gaussian_diagnostics(target: str, a: Tensor, b: Tensor, s: float = 1.0) -> dict[str, Tensor]:
    """The three closed forms for x0 ~ N(0, s^2), per dimension."""
    c, d = TARGET_COEFFICIENTS[target](a, b)
    var_y = c**2 * s**2 + d**2
    var_x = a**2 * s**2 + b**2
    cov = c * a * s**2 + d * b
    return {"correlation": cov / (var_y * var_x).sqrt(),
            "slope": cov / var_x,
            "signal": cov.abs() / var_x.sqrt(),
            "conditional_variance": s**2 * (c * b - d * a) ** 2 / var_x}


@torch.no_grad()
def monte_carlo_diagnostics(data: Tensor, target: str, a: float, b: float, n: int,
                            generator: torch.Generator, chunk: int = 512) -> dict[str, float]:
    """The three numbers for x0 drawn from ``data`` ([N, D], float64), by Monte Carlo.

    Correlation is the pooled Pearson correlation of (y, x_t) over samples and dimensions;
    signal and conditional variance use the data set's exact posterior over its N points.
    """
    data = data.to(torch.float64).flatten(1)
    idx = torch.randint(0, data.shape[0], (n,), generator=generator)
    x0 = data[idx]
    eps = torch.randn(x0.shape, generator=generator, dtype=torch.float64)
    x_t = a * x0 + b * eps
    at, bt = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    c, d = (float(v) for v in TARGET_COEFFICIENTS[target](at, bt))
    y = c * x0 + d * eps
    means, second = [], []
    sq_norm = (data**2).sum(1)
    for i in range(0, n, chunk):
        xt = x_t[i:i + chunk]
        # log q(x_t | x_i) up to a constant: -||x_t - a x_i||^2 / (2 b^2).
        logits = (a * xt @ data.T - 0.5 * a**2 * sq_norm) / b**2
        w = torch.softmax(logits, dim=1)
        means.append(w @ data)
        second.append(w @ data**2)
    m, m2 = torch.cat(means), torch.cat(second)
    k = c - d * a / b  # y = k x0 + (d / b) x_t
    cond_mean = k * m + (d / b) * x_t
    cond_var = k**2 * (m2 - m**2).clamp(min=0)
    yc, xc = y - y.mean(0), x_t - x_t.mean(0)
    corr = float((yc * xc).sum() / ((yc**2).sum() * (xc**2).sum()).sqrt())
    # Cov(E[y | x_t], x_t) = Cov(y, x_t): the posterior mean gives the lower-noise estimate
    slope = float(((cond_mean - cond_mean.mean(0)) * xc).sum() / (xc**2).sum())
    signal = math.sqrt(float((cond_mean - cond_mean.mean(0)).square().mean()))
    return {"correlation": corr, "slope": slope, "signal": signal,
            "conditional_variance": float(cond_var.mean())}


def standardized_digits() -> Tensor:
    """scikit-learn's 8x8 digits in [-1, 1], centred per pixel and divided by their overall
    std, as [N, 64] float64: the whitened data seed 000 §3 compares with N(0, I)."""
    from sklearn.datasets import load_digits

    x = torch.from_numpy(load_digits().images).to(torch.float64).div(16).mul(2).sub(1)
    x = x.flatten(1)
    x = x - x.mean(0)
    return x / x.std()


def target_diagnostics_table(snrs: Tensor, data: Tensor | None, n: int = 2000, seed: int = 0,
                             s: float = 1.0, schedule=None) -> list[dict]:
    """Rows (source, target, snr, [t,] correlation, slope, signal, conditional_variance): the
    Gaussian closed form at every SNR and, when ``data`` is given, Monte Carlo on it. With a
    ``schedule``, each row also carries the time t at which that schedule reaches the SNR."""
    rows = []
    a, b = vp_levels(snrs)
    times = None if schedule is None else schedule.time_from_log_snr(snrs.log()).tolist()

    def at(i: int) -> dict:
        return {} if times is None else {"t": times[i]}

    for target in TARGET_COEFFICIENTS:
        closed = gaussian_diagnostics(target, a, b, s)
        for i, snr in enumerate(snrs.tolist()):
            rows.append({"source": "gaussian", "target": target, "snr": snr, **at(i),
                         **{k: float(closed[k][i]) for k in METRICS}})
    if data is not None:
        g = torch.Generator().manual_seed(seed)
        for target in TARGET_COEFFICIENTS:
            for i, snr in enumerate(snrs.tolist()):
                mc = monte_carlo_diagnostics(data, target, float(a[i]), float(b[i]), n, g)
                rows.append({"source": "data", "target": target, "snr": snr, **at(i), **mc})
    return rows


def draw_target_diagnostics(rows: list[dict], data_label: str = "digits",
                            time_label: str | None = None):
    """One panel per metric against SNR (and a second row against t when the rows carry
    it): closed forms as lines, measurements on data as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"correlation": "correlation of y with x_t",
              "slope": "slope of E[y | x_t] on x_t (signed)",
              "signal": "signal: std of E[y | x_t]",
              "conditional_variance": "conditional variance E Var(y | x_t)"}
    axes_x = ["snr"] + (["t"] if rows and "t" in rows[0] else [])
    sources = list(dict.fromkeys(r["source"] for r in rows))
    fig, axes = plt.subplots(len(axes_x), len(METRICS), figsize=(4.6 * len(METRICS),
                                                                 4.0 * len(axes_x)),
                             squeeze=False)
    for row, xkey in enumerate(axes_x):
        for j, metric in enumerate(METRICS):
            ax = axes[row, j]
            for k, target in enumerate(TARGET_COEFFICIENTS):
                for source in sources:
                    pts = [(r[xkey], r[metric]) for r in rows
                           if r["source"] == source and r["target"] == target]
                    if not pts:
                        continue
                    pts.sort()
                    xs, ys = zip(*pts, strict=True)
                    style = "-" if source == "gaussian" else "o"
                    label = f"{target} (Gaussian)" if source == "gaussian" else \
                        f"{target} ({data_label})"
                    ax.plot(xs, ys, style, color=f"C{k}", label=label, ms=4)
            if xkey == "snr":
                ax.set_xscale("log")
                ax.set_xlabel("SNR")
            else:
                ax.set_xlabel(time_label or "t")
            if metric in ("signal", "conditional_variance"):
                ax.set_yscale("log")
            elif metric == "slope":
                ax.set_yscale("symlog", linthresh=1e-2)
            ax.set_title(titles[metric])
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
