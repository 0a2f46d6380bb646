"""Mutual information of every target with x_t from an MMSE curve (seed 001 §3, §3.2, Figure 1).

The I-MMSE identity (Guo, Shamai, Verdu 2005; seed 001 §3.2.1): with x_t / sigma =
sqrt(SNR) x0 + eps,

    dI(x0; x_t) / dSNR = MMSE(SNR) / 2,   MMSE = E||x0 - E[x0 | x_t]||^2 / D   (per dimension)

so I(x0; x_t) = 1/2 int_0^SNR MMSE. The other targets follow from entropies (per dimension,
nats, lambda = logSNR), with K = lim_{g -> inf} [I_x0(g) - 1/2 log g] = h(x0) / D - 1/2 log 2 pi e:

    eps:   I(eps; x_t) = h(x_t) - h(alpha x0) = I_x0(SNR) - 1/2 log SNR - K
                       = 1/2 int_SNR^inf (1/g - MMSE(g)) dg          (falls with SNR, §3.2.2)
    score: I(score; x_t) = I(eps; x_t)                               (an invertible scaling, §3.1.4)
    v:     given v = alpha eps - sigma x0, x0 is seen through a Gaussian channel of SNR 1/SNR, so
           I(v; x_t) = I_x0(SNR) + I_x0(1/SNR) + 1/2 log SNR - log(1 + SNR) - K   (the arch, §3.2.3)

For x0 ~ N(0, s^2) these give the closed forms of ``information.py``.

The measured grid covers the schedule's range only, so the curve is extended the way the
limits dictate: below it MMSE is interpolated linearly in SNR towards Var(x0) at SNR = 0;
above it MMSE = 1/SNR (the x0 error of x_t / alpha, i.e. eps-MMSE = 1), which is also what
makes K finite. A denoiser whose eps error at the top of the grid is far from 1 (finite data
memorised exactly) would need a grid reaching higher SNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INFORMATION_TARGETS = ("x0", "eps", "v", "score")


@dataclass
class InformationCurves:
    """I(y; x_t) in nats per dimension at each measured logSNR, for y in INFORMATION_TARGETS."""

    log_snr: np.ndarray
    mmse: np.ndarray
    information: dict[str, np.ndarray]


def _extended_mmse(lam: np.ndarray, log_snr: np.ndarray, mmse: np.ndarray,
                   var_x0: float) -> np.ndarray:
    """MMSE on an arbitrary logSNR grid from the measured points and the two limits."""
    lo, hi = log_snr[0], log_snr[-1]
    inside = np.exp(np.interp(lam, log_snr, np.log(np.maximum(mmse, 1e-300))))
    g, g_lo = np.exp(lam), np.exp(lo)
    below = var_x0 + (mmse[0] - var_x0) * g / g_lo
    above = np.exp(-lam)
    return np.where(lam < lo, below, np.where(lam > hi, above, inside))


def information_from_mmse(log_snr, mmse, var_x0: float, step: float = 0.01) -> InformationCurves:
    """Integrate a measured MMSE(logSNR) curve (per dimension) into I(y; x_t) for every target."""
    order = np.argsort(log_snr)
    log_snr = np.asarray(log_snr, dtype=np.float64)[order]
    mmse = np.asarray(mmse, dtype=np.float64)[order]
    top = float(np.max(np.abs(log_snr))) + step
    lam = np.union1d(np.arange(-top, top + step / 2, step), np.concatenate([log_snr, -log_snr]))
    m = _extended_mmse(lam, log_snr, mmse, var_x0)
    # I_x0 at the grid's left end: 1/2 int_0^g of the linear-in-SNR extension (trapezoid exact).
    g0 = np.exp(lam[0])
    m_lo, g_lo = mmse[0], np.exp(log_snr[0])
    start = 0.5 * (var_x0 * g0 + (m_lo - var_x0) * g0**2 / (2 * g_lo))
    # dI = 1/2 MMSE dSNR = 1/2 MMSE SNR dlambda, trapezoid in lambda.
    integrand = 0.5 * m * np.exp(lam)
    i_x0 = start + np.concatenate([[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1])
                                                    * np.diff(lam))])
    k = i_x0[-1] - 0.5 * lam[-1]  # beyond the top MMSE = 1/SNR, so I_x0 - lambda/2 is constant
    at = np.searchsorted(lam, log_snr)
    at_mirror = np.searchsorted(lam, -log_snr)
    x0 = i_x0[at]
    eps = x0 - 0.5 * log_snr - k
    v = x0 + i_x0[at_mirror] + 0.5 * log_snr - np.logaddexp(0.0, log_snr) - k
    return InformationCurves(log_snr, mmse, {"x0": x0, "eps": eps, "v": v, "score": eps.copy()})


def information_rows(curves: InformationCurves, times: np.ndarray | None = None) -> list[dict]:
    """CSV rows: target, log_snr, snr, t (the run's schedule time, when given), mmse, mi_nats."""
    rows = []
    for target in INFORMATION_TARGETS:
        for i, lam in enumerate(curves.log_snr):
            row = {"target": target, "log_snr": float(lam), "snr": float(np.exp(lam))}
            if times is not None:
                row["t"] = float(times[i])
            rows.append(row | {"mmse": float(curves.mmse[i]),
                               "mi_nats": float(curves.information[target][i])})
    return rows


def draw_information_curves(curves: InformationCurves, times: np.ndarray | None,
                            time_label: str, title: str,
                            reference: InformationCurves | None = None):
    """Seed 001 Figure 1 from measured MMSE: I(y; x_t) against t (left) and SNR (right), plus
    the MMSE itself; ``reference`` (e.g. Gaussian data of the same variance) is drawn dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if times is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2))
    styles = {"x0": "-", "eps": "-", "v": "-", "score": "--"}
    snr = np.exp(curves.log_snr)
    for k, target in enumerate(INFORMATION_TARGETS):
        mi = curves.information[target]
        if times is not None:
            axes[0].plot(times, mi, styles[target], color=f"C{k}", label=target)
        axes[-2].plot(snr, mi, styles[target], color=f"C{k}", label=target)
        if reference is not None:
            axes[-2].plot(np.exp(reference.log_snr), reference.information[target], ":",
                          color=f"C{k}", alpha=0.7)
    axes[-1].plot(snr, curves.mmse, color="k", label="MMSE of x0 (measured)")
    bound = 1 / snr
    axes[-1].plot(snr, np.where(bound <= 2 * np.max(curves.mmse), bound, np.nan), ":",
                  color="0.5", label="1 / SNR (error of x_t / alpha)")
    if reference is not None:
        axes[-1].plot(np.exp(reference.log_snr), reference.mmse, ":", color="C7",
                      label="Gaussian, same variance")
    if times is not None:
        axes[0].set_xlabel(time_label)
        axes[0].set_ylabel("I(y; x_t) [nats / dim]")
    axes[-2].set_xlabel("SNR")
    axes[-2].set_ylabel("I(y; x_t) [nats / dim]")
    axes[-1].set_xlabel("SNR")
    axes[-1].set_ylabel("MMSE per dimension")
    axes[-1].set_yscale("log")
    for ax in axes[-2:]:
        ax.set_xscale("log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
