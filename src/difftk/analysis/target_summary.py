"""Seed 000 §3.4's comparative table, measured: each target's correlation, conditional-mean
slope and signal, and conditional variance at low, middle and high SNR, and the regime it
favours.

The verdict reads the explained fraction R^2 = Var E[y | x_t] / (Var E[y | x_t] + E Var(y | x_t))
(the law of total variance of §3.3): a target whose R^2 is much larger at low SNR than at high
SNR learns the noisy end best ("low SNR"), the converse "high SNR"; within 0.25 of each other
it is "balanced" (and "balanced, weak" when R^2 stays under 0.25 at both ends, v's case).
"""

from __future__ import annotations

import math

from difftk.analysis.target_diagnostics import METRICS

REGIMES = {"low": 1e-2, "mid": 1.0, "high": 1e2}


def explained_fraction(row: dict) -> float:
    signal2 = row["signal"] ** 2
    total = signal2 + row["conditional_variance"]
    return signal2 / total if total > 0 else float("nan")


def verdict(r2_low: float, r2_high: float) -> str:
    if r2_low - r2_high > 0.25:
        return "low SNR"
    if r2_high - r2_low > 0.25:
        return "high SNR"
    return "balanced, weak" if max(r2_low, r2_high) < 0.25 else "balanced"


def summary_rows(rows: list[dict]) -> list[dict]:
    """One row per (source, target): each metric and R^2 at the SNR nearest each regime."""
    out = []
    for source in dict.fromkeys(r["source"] for r in rows):
        for target in dict.fromkeys(r["target"] for r in rows if r["source"] == source):
            mine = [r for r in rows if r["source"] == source and r["target"] == target]
            row: dict = {"source": source, "target": target}
            r2 = {}
            for regime, snr in REGIMES.items():
                near = min(mine, key=lambda r, s=snr: abs(math.log(r["snr"] / s)))
                row[f"snr_{regime}"] = near["snr"]
                for metric in METRICS:
                    row[f"{metric}_{regime}"] = near[metric]
                r2[regime] = explained_fraction(near)
                row[f"r2_{regime}"] = r2[regime]
            row["favours"] = verdict(r2["low"], r2["high"])
            out.append(row)
    return out
