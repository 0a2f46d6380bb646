"""`difftk analyze information`: seed 001 Figure 1 measured on a trained run's held-out data.

MMSE(SNR) from the run's denoiser over a logSNR grid inside its schedule's range, integrated
by the I-MMSE identity into I(x0; x_t), I(eps; x_t), I(v; x_t) and the score's curve
(``information_from_mmse``). The Gaussian of the data's per-dimension variance is drawn beside
it: where the measured curves leave it is where the data's non-Gaussianity shows (the v arch
of §3.2.3 needs it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from difftk.analysis.denoiser_mmse import measure_mmse, per_dimension_variance
from difftk.analysis.information_from_mmse import (
    InformationCurves,
    draw_information_curves,
    information_from_mmse,
    information_rows,
)
from difftk.analysis.trained_run import TrainedRun


@dataclass
class RunInformation:
    curves: InformationCurves
    gaussian: InformationCurves
    times: np.ndarray
    var_x0: float
    rows: list[dict]


def run_information(run: TrainedRun, points: int = 41, seed: int = 0,
                    batch_size: int = 256) -> RunInformation:
    lo, hi = run.log_snr_range()
    log_snr = np.linspace(lo, hi, points)
    mmse = measure_mmse(run.denoiser, run.heldout, log_snr, run.levels_at_log_snr, seed,
                        batch_size, run.heldout_labels, run.device)
    var_x0 = per_dimension_variance(run.heldout)
    curves = information_from_mmse(log_snr, mmse, var_x0)
    # Gaussian x0 of the same variance: MMSE = s^2 / (1 + s^2 SNR) (the closed-form reference).
    gaussian = information_from_mmse(log_snr, var_x0 / (1 + var_x0 * np.exp(log_snr)), var_x0)
    times = run.times(log_snr)
    return RunInformation(curves, gaussian, times, var_x0, information_rows(curves, times))


def draw_run_information(result: RunInformation, run: TrainedRun):
    title = (f"Mutual information of each target with x_t from the denoiser's MMSE "
             f"(step {run.step}; dotted: Gaussian x0 with variance {result.var_x0:.3g})")
    return draw_information_curves(result.curves, result.times, run.time_label(), title,
                                   reference=result.gaussian)
