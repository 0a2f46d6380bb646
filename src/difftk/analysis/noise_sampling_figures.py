"""Where each distribution spends training steps: a histogram of ln sigma (EDM's sigma) from
many draws, with the density each distribution states drawn over it (seed 001 Figure 3).

The stated density of logSNR becomes one of ln sigma through ln sigma = -logSNR / 2, so
p(ln sigma) = 2 p(logSNR): a histogram that matches its line checks sampler and density.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from difftk.analysis.run_figures import RUN_FIGURES

SIGMA_RANGE = (0.002, 80.0)  # EDM's sigma_min, sigma_max: the figure's axis
QUANTILES = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999)


@dataclass
class Draws:
    """ln(sigma_edm) of many draws of one distribution on one schedule."""

    label: str
    log_sigma: np.ndarray
    grid: np.ndarray  # ln sigma where the stated density is evaluated
    density: np.ndarray  # stated p(ln sigma) on the grid


def draw_log_sigma(label: str, sampler, schedule, n: int = 500_000, seed: int = 0,
                   sigma_range: tuple[float, float] = SIGMA_RANGE) -> Draws:
    """n draws (one vectorised call) and the stated density over ``sigma_range``."""
    generator = torch.Generator().manual_seed(seed)
    levels = sampler.sample(n, schedule, generator, "cpu")
    log_snr = 2 * (torch.log(levels.alpha.double()) - torch.log(levels.sigma.double()))
    log_sigma = (-0.5 * log_snr).numpy()
    grid = np.linspace(np.log(sigma_range[0]), np.log(sigma_range[1]), 400)
    density = 2 * sampler.log_snr_density(torch.from_numpy(-2 * grid), schedule).numpy()
    return Draws(label, log_sigma, grid, density)


def write_csv(draws: list[Draws], path: str | Path,
              sigma_range: tuple[float, float] = SIGMA_RANGE) -> None:
    """Per distribution: ln sigma quantiles, mean, std, and the fraction inside ``sigma_range``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lo, hi = np.log(sigma_range[0]), np.log(sigma_range[1])
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["distribution", "statistic", "log_sigma"])
        for d in draws:
            finite = d.log_sigma[np.isfinite(d.log_sigma)]
            for q, v in zip(QUANTILES, np.quantile(d.log_sigma, QUANTILES), strict=True):
                out.writerow([d.label, f"q{q:g}", f"{v:.6g}"])
            out.writerow([d.label, "mean", f"{finite.mean():.6g}"])
            out.writerow([d.label, "std", f"{finite.std():.6g}"])
            inside = np.mean((d.log_sigma >= lo) & (d.log_sigma <= hi))
            out.writerow([d.label, "fraction_in_range", f"{inside:.6g}"])


def draw_histograms(draws: list[Draws], title: str = "",
                    sigma_range: tuple[float, float] = SIGMA_RANGE, bins: int = 120) -> np.ndarray:
    """Step histograms (density) of ln sigma over ``sigma_range``; thin lines: stated densities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from difftk.eval.figures import figure_to_image

    lo, hi = np.log(sigma_range[0]), np.log(sigma_range[1])
    edges = np.linspace(lo, hi, bins + 1)
    fig, ax = plt.subplots(figsize=(8.5, 4.0), dpi=100)
    palette = plt.get_cmap("tab10")
    for i, d in enumerate(draws):
        color = palette(i % palette.N)
        # Normalised by all draws, so mass outside the axis is visibly missing.
        counts, _ = np.histogram(d.log_sigma, edges)
        dens = counts / (len(d.log_sigma) * np.diff(edges))
        inside = counts.sum() / len(d.log_sigma)
        # Dashed every other line: identical distributions (uniform_t on edm and
        # uniform_sigma) stay visible on top of each other.
        ax.stairs(dens, edges, color=color, lw=1.5, ls="-" if i % 2 == 0 else "--",
                  label=f"{d.label} ({inside:.0%} in range)")
        ax.plot(d.grid, d.density, color=color, lw=0.8, alpha=0.7, ls=":")
    ax.set_xlim(lo, hi)
    ax.set_xlabel(f"ln sigma   (sigma = sigma_t / alpha_t in [{sigma_range[0]:g}, {sigma_range[1]:g}])")
    ax.set_ylabel("density of ln sigma")
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.subplots_adjust(right=1 - 2.4 / fig.get_figwidth())
    fig.legend(*ax.get_legend_handles_labels(), loc="center right", fontsize=7, frameon=False)
    return figure_to_image(fig)


def run_noise_sampling_figure(recipe) -> list[tuple[str, np.ndarray]]:
    """The run's distribution on the run's schedule (TensorBoard at start)."""
    sampler, schedule = recipe.parts["noise_sampling"], recipe.parts["schedule"]
    lo, hi = schedule.sigma_edm_range()
    # A flow path starts at the data (sigma 0), which a log axis cannot show.
    axis = (min(lo, SIGMA_RANGE[0]) if lo > 0 else SIGMA_RANGE[0],
            max(min(hi, 1e4), SIGMA_RANGE[1]))
    draws = draw_log_sigma(sampler.name, sampler, schedule, n=200_000, sigma_range=axis)
    return [("noise_sampling", draw_histograms(
        [draws], title=f"noise_sampling = {sampler.name} on schedule = {schedule.name}",
        sigma_range=axis))]


RUN_FIGURES.append(run_noise_sampling_figure)
