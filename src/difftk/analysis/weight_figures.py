"""What a loss weighting really does: w against logSNR, and its weight on the x0-MSE per target.

A weighting's formula weights either the trained target's MSE or the x0-MSE
(``relative_to``). Since ||T_hat - T||^2 = k_T ||x0_hat - x0||^2 at fixed x_t (seed 003
eq. 5.3, 5.7), the weight the x0 error actually receives when training target T is
w k_T for relative_to = "target" and w for relative_to = "x0". Plotting that effective
weight for x0, eps and v side by side shows, e.g., that ``uniform`` on an eps-model is
SNR-weighting of x0 (seed 001 §7).

Each curve also carries the schedule's time t of every level, so the same weights are drawn
against t as seed 003 draws its weighting factors (Figures 4.9 and 5.5: 1 / (2 sigma_t^2)
on the mean, the x0 weight of the fixed-variance bound).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from difftk.analysis.run_figures import RUN_FIGURES
from difftk.diffusion.levels import Levels
from difftk.eval.figures import figure_to_image


@dataclass
class WeightCurve:
    """One weighting evaluated along a schedule: logSNR, its time t, w, and the x0-MSE weight
    per target."""

    label: str
    relative_to: str
    log_snr: np.ndarray
    w: np.ndarray
    effective: dict[str, np.ndarray] = field(default_factory=dict)
    t: np.ndarray | None = None
    mse: str = "x0"  # the MSE ``effective`` weights: x0's, or the posterior mean's


def levels_for(weighting, schedule, log_snr_range: tuple[float, float], n: int = 241) -> Levels:
    """The levels a weighting is drawn at: the table's t = 1..T for table weightings,
    else an even logSNR grid mapped through the schedule (its alpha scale included)."""
    if weighting.needs_table:
        return schedule.levels_at(torch.arange(1, schedule.num_steps + 1))
    grid = torch.linspace(log_snr_range[1], log_snr_range[0], n, dtype=torch.float64)
    return schedule.levels_from_sigma_edm(torch.exp(-0.5 * grid))


def mean_error_factor(schedule, levels: Levels) -> torch.Tensor:
    """c_x0^2: ||mu_theta - mu_tilde||^2 = c_x0^2 ||x0_hat - x0||^2 for the step t -> t - 1
    of a t-space schedule (seed 003 eq. 5.3), so weight on the mean's MSE = (x0 weight) / c_x0^2."""
    from difftk.diffusion.vlb import posterior

    t = levels.t if levels.t is not None else schedule.time_from_log_snr(levels.log_snr)
    return posterior(schedule, t.double()).c_x0.double() ** 2


def weight_curve(label: str, weighting, targets: dict[str, object], schedule,
                 log_snr_range: tuple[float, float] = (-10.0, 10.0),
                 mse: str = "x0") -> WeightCurve:
    """w along the schedule, and per target the weight it puts on the x0-MSE (``mse = "x0"``)
    or on the posterior mean's MSE (``"mean"``, seed 003 Figure 4.9: the ELBO's is
    1 / (2 sigma_t^2); t-space schedules)."""
    levels = levels_for(weighting, schedule, log_snr_range)
    levels = Levels(alpha=levels.alpha.double(), sigma=levels.sigma.double(), t=levels.t)
    w = weighting.at(levels, schedule).double()
    to_mean = mean_error_factor(schedule, levels) if mse == "mean" else None
    effective = {}
    for name, target in targets.items():
        # targets like `mean` read the schedule's table (a copy is bound; idempotent)
        on_x0 = weighting.on_x0(levels, target.bind(schedule), schedule)
        effective[name] = (on_x0 if to_mean is None else on_x0 / to_mean).numpy()
    t = levels.t if levels.t is not None else schedule.time_from_log_snr(levels.log_snr)
    return WeightCurve(label, weighting.relative_to, levels.log_snr.numpy(), w.numpy(), effective,
                       t.double().numpy(), mse)


def weight_curves(names: list[str] | None, target_specs: list[str], schedule_spec: str,
                  sigma_data: float, log_snr_range: tuple[float, float],
                  mse: str = "x0") -> tuple[list[WeightCurve], object]:
    """The curves `difftk plot weights` draws: each weighting spec (default: every installed
    one) on the schedule ``schedule_spec``, with the weight it puts on each target's x0-MSE
    (or on the posterior mean's MSE); every choice validated in one sentence (DifftkError)."""
    from difftk.diffusion.table_rule import table_problems
    from difftk.errors import DifftkError
    from difftk.recipe import component_from_spec
    from difftk.registry import default_registry

    if log_snr_range[0] >= log_snr_range[1]:
        raise DifftkError("--log-snr-min must be smaller than --log-snr-max")
    if mse not in ("x0", "mean"):
        raise DifftkError(f'--mse must be "x0" or "mean", not "{mse}"')
    registry = default_registry()
    defaults = {"sigma_data": sigma_data}
    sched = component_from_spec("schedule", schedule_spec, registry, defaults)
    if mse == "mean" and not sched.has_table:
        raise DifftkError(f'--mse mean weighs the posterior mean of a table\'s step, and the '
                          f'schedule "{schedule_spec}" has none (choose one with --schedule)')
    targets = {t: component_from_spec("target", t, registry, defaults) for t in target_specs}
    for spec, part in targets.items():
        problems = table_problems({"target": part, "schedule": sched}) + part.check(
            {"schedule": sched})
        if problems:
            raise DifftkError(f"--target {spec}: {problems[0][1]} (choose one with --schedule)")
    curves = []
    for spec in names or registry.names("weights"):
        weighting = component_from_spec("weight", spec, registry, defaults)
        problems = (table_problems({"weight": weighting, "schedule": sched})
                    + weighting.check({"schedule": sched}))
        if problems:
            raise DifftkError(f"{spec}: {problems[0][1]} (choose one with --schedule)")
        curves.append(weight_curve(spec, weighting, targets, sched, log_snr_range, mse))
    return curves, sched


def write_csv(curves: list[WeightCurve], path: str | Path) -> None:
    """One row per (weighting, level): name, relative_to, log_snr, the schedule's t, w, and the
    x0-MSE weight per target."""
    targets = list(curves[0].effective) if curves else []
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["name", "relative_to", "log_snr", "t", "w",
                      *[f"{curves[0].mse}_weight_{t}" for t in targets]])
        for c in curves:
            for i in range(len(c.log_snr)):
                out.writerow([c.label, c.relative_to, f"{c.log_snr[i]:.6g}", f"{c.t[i]:.6g}",
                              f"{c.w[i]:.9g}",
                              *[f"{c.effective[t][i]:.9g}" for t in targets]])


def _positive(values: np.ndarray) -> np.ndarray:
    # Log axes cannot show 0; a zero weight is left as a gap rather than clipped.
    return np.where(values > 0, values, np.nan)


def draw_weights(curves: list[WeightCurve], title: str = "", time_label: str = "t") -> np.ndarray:
    """Top row against logSNR, bottom row against the schedule's t. Column 1: w as its formula
    states it; one column per target: the weight on the x0-MSE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(curves[0].effective) if curves else []
    columns = 1 + len(targets)
    fig, axes = plt.subplots(2, columns, figsize=(4.2 * columns, 7.4), dpi=100, squeeze=False)
    palette = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for row, xkey in enumerate(("log_snr", "t")):
        for i, c in enumerate(curves):
            color = palette(i % palette.N)
            x = getattr(c, xkey)
            axes[row, 0].plot(x, _positive(c.w), color=color,
                              label=f"{c.label} (on {c.relative_to})")
            for ax, target in zip(axes[row, 1:], targets, strict=True):
                ax.plot(x, _positive(c.effective[target]), color=color, label=c.label)
        axes[row, 0].set_title("w as defined")
        for ax, target in zip(axes[row, 1:], targets, strict=True):
            ax.set_title(f"weight on the {curves[0].mse}-MSE, {target} target")
        for ax in axes[row]:
            ax.set_yscale("log")
            ax.set_xlabel("logSNR" if xkey == "log_snr" else time_label)
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel("weight")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    # The legend sits in a margin on the right so it hides no curve.
    legend_width = 2.2 / fig.get_figwidth()
    fig.subplots_adjust(right=1 - legend_width)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="center right", fontsize=7,
               frameon=False)
    return figure_to_image(fig)


def run_weight_figure(recipe) -> list[tuple[str, np.ndarray]]:
    """The run's weighting over its schedule's range, for its own target (TensorBoard at start)."""
    parts = recipe.parts
    schedule, weighting = parts["schedule"], parts["weight"]
    target = parts["target"].bind(schedule)  # targets like `mean` need the schedule's table
    lo, hi = schedule.sigma_edm_range()
    hi = min(hi, 1e4)  # zero terminal SNR: stop at logSNR = -18
    lo = max(lo, 1e-4)  # a flow path starts at the data: stop at logSNR = 18
    log_snr_range = (-2 * float(np.log(hi)), -2 * float(np.log(lo)))
    curve = weight_curve(weighting.name, weighting, {target.name: target}, schedule, log_snr_range)
    lo_t, hi_t = schedule.time_range()
    return [("weight", draw_weights([curve], title=f"weight = {weighting.name}, "
                                                   f"target = {target.name}",
                                    time_label=f"t ({schedule.name}, {lo_t:g}..{hi_t:g})"))]


RUN_FIGURES.append(run_weight_figure)
