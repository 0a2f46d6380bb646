"""How each schedule spends its time axis: logSNR and alpha against t / T (seed 001 Figure 2).

t-space schedules are drawn at t = 1..T, with and without zero terminal SNR (Lin et al.
2024), where logSNR(T) = -inf is drawn at the bottom edge of the axis; sigma-space
schedules are drawn over their u in [0, 1].
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difftk.analysis.run_figures import RUN_FIGURES
from difftk.eval.figures import figure_to_image

LOG_SNR_FLOOR = -20.0  # where -inf (zero terminal SNR) is drawn


@dataclass
class ScheduleCurve:
    """One schedule along its time axis: t (integer t or u), t / t_max, alpha, sigma, logSNR."""

    label: str
    variant: str  # "" or "zero_terminal_snr"
    t: np.ndarray
    fraction: np.ndarray
    alpha: np.ndarray
    sigma: np.ndarray

    @property
    def log_snr(self) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return 2 * (np.log(self.alpha) - np.log(self.sigma))


def schedule_curve(label: str, schedule, variant: str = "", n: int = 1000) -> ScheduleCurve:
    fraction, alpha, sigma = schedule.curve(n)
    t = fraction * schedule.num_steps if schedule.has_table else fraction
    return ScheduleCurve(label, variant, t.numpy(), fraction.numpy(), alpha.numpy(), sigma.numpy())


def schedule_curves(label: str, schedule, with_zero_terminal: bool = True) -> list[ScheduleCurve]:
    """The schedule as given and, for a t-space schedule that lacks it, its zero-terminal-SNR twin."""
    curves = [schedule_curve(label, schedule,
                             "zero_terminal_snr" if getattr(schedule, "zero_terminal_snr", False)
                             else "")]
    if with_zero_terminal and schedule.has_table and not schedule.zero_terminal_snr:
        twin = type(schedule).model_validate({**schedule.params(), "zero_terminal_snr": True})
        curves.append(schedule_curve(label, twin, "zero_terminal_snr"))
    return curves


def write_csv(curves: list[ScheduleCurve], path: str | Path) -> None:
    """One row per (schedule, variant, t): t, t/T, alpha, sigma, alpha_bar = alpha^2, logSNR."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["schedule", "variant", "t", "t_over_T", "alpha", "sigma", "alpha_bar",
                      "log_snr"])
        for c in curves:
            ls = c.log_snr
            for i in range(len(c.t)):
                out.writerow([c.label, c.variant or "plain", f"{c.t[i]:.6g}", f"{c.fraction[i]:.6g}",
                              f"{c.alpha[i]:.9g}", f"{c.sigma[i]:.9g}", f"{c.alpha[i] ** 2:.9g}",
                              f"{ls[i]:.9g}"])


def draw_schedules(curves: list[ScheduleCurve], title: str = "") -> np.ndarray:
    """Left: logSNR against t / T; right: alpha = sqrt(alpha_bar). Dashed: zero terminal SNR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_snr, ax_alpha) = plt.subplots(1, 2, figsize=(10.5, 4.0), dpi=100)
    palette = plt.get_cmap("tab10")
    colors: dict[str, tuple] = {}
    for c in curves:
        color = colors.setdefault(c.label, palette(len(colors) % palette.N))
        style = "--" if c.variant else "-"
        label = f"{c.label} (zero terminal SNR)" if c.variant else c.label
        # +-inf (pure noise; a flow path's data end) drawn at the floor and its mirror.
        ls = np.clip(np.nan_to_num(c.log_snr, neginf=LOG_SNR_FLOOR, posinf=-LOG_SNR_FLOOR),
                     LOG_SNR_FLOOR, -LOG_SNR_FLOOR)
        ax_snr.plot(c.fraction, ls, style, color=color, label=label, lw=1.4)
        ax_alpha.plot(c.fraction, c.alpha, style, color=color, label=label, lw=1.4)
    ax_snr.set_ylim(bottom=LOG_SNR_FLOOR)
    ax_snr.set_ylabel(f"logSNR  (-inf drawn at {LOG_SNR_FLOOR:g})")
    ax_alpha.set_ylabel("alpha = sqrt(alpha_bar)")
    for ax in (ax_snr, ax_alpha):
        ax.set_xlabel("t / T  (u for sigma-space schedules)")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.subplots_adjust(right=1 - 2.6 / fig.get_figwidth())
    fig.legend(*ax_snr.get_legend_handles_labels(), loc="center right", fontsize=7, frameon=False)
    return figure_to_image(fig)


def run_schedule_figure(recipe) -> list[tuple[str, np.ndarray]]:
    """The run's schedule (and its zero-terminal-SNR twin) for TensorBoard at start."""
    schedule = recipe.parts["schedule"]
    curves = schedule_curves(schedule.name, schedule)
    return [("schedule", draw_schedules(curves, title=f"schedule = {schedule.name}"))]


RUN_FIGURES.append(run_schedule_figure)
