"""The denoising trajectory of seed 003 Figure 1.1: samples on their way from noise to data,
with the denoiser's x0 estimate at each step beside the state it was made from.

The sampler reports every step through its callback (diffusion/sampler.py ``report``,
k-diffusion's shape): the state x_t = alpha x0 + sigma eps the network saw and its x0
estimate. We keep the steps chosen in advance (the sampler's grid says how many there are),
so a 1,000-step ancestral run holds only the columns it draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Trajectory:
    steps: list[int]  # the sampler's step index of each column, ascending
    total_steps: int
    alpha: list[float]  # the level of each kept step
    sigma: list[float]
    times: list[float]  # the schedule's time of each kept step
    x_t: torch.Tensor  # [K, N, ...] the state at each kept step
    x0_hat: torch.Tensor  # [K, N, ...] the denoiser's x0 estimate of it
    sample: torch.Tensor  # [N, ...] what the sampler returned

    @property
    def log_snr(self) -> list[float]:
        return [float(2 * (np.log(a) - np.log(s))) if a > 0 else float("-inf")
                for a, s in zip(self.alpha, self.sigma, strict=True)]


def chosen_steps(total: int, columns: int) -> list[int]:
    """``columns`` step indices spread evenly over 0..total-1, the first and last included."""
    if columns >= total:
        return list(range(total))
    return sorted({int(round(v)) for v in np.linspace(0, total - 1, columns)})


def denoising_trajectory(sampler, denoiser, noise: torch.Tensor, generator: torch.Generator,
                         labels: torch.Tensor | None, steps: list[int] | None = None,
                         columns: int = 8) -> Trajectory:
    """Run ``sampler`` from ``noise`` and keep x_t and the x0 estimate at ``steps`` (indices
    into the sampler's grid; default ``columns`` evenly spaced ones)."""
    schedule = denoiser.schedule
    total = sampler.noise_levels(schedule).steps
    keep = sorted(set(steps)) if steps is not None else chosen_steps(total, columns)
    bad = [i for i in keep if not 0 <= i < total]
    if bad:
        raise ValueError(f"step {bad[0]} is outside the sampler's {total} steps (0..{total - 1})")
    wanted = set(keep)
    seen: dict[int, dict] = {}

    def listen(step: dict) -> None:
        if step["i"] in wanted:
            seen[step["i"]] = {"x": step["x"].detach().float().cpu(),
                               "denoised": step["denoised"].detach().float().cpu(),
                               "alpha": float(step["alpha"]), "sigma": float(step["sigma"])}

    result = sampler.sample(denoiser, noise, generator, labels, callback=listen)
    alpha = [seen[i]["alpha"] for i in keep]
    sigma = [seen[i]["sigma"] for i in keep]
    log_snr = torch.tensor([2 * (np.log(max(a, 1e-300)) - np.log(s))
                            for a, s in zip(alpha, sigma, strict=True)], dtype=torch.float64)
    times = schedule.time_from_log_snr(log_snr).tolist()
    return Trajectory(keep, total, alpha, sigma, times,
                      torch.stack([seen[i]["x"] for i in keep]),
                      torch.stack([seen[i]["denoised"] for i in keep]), result.x.float().cpu())


def trajectory_tiles(traj: Trajectory) -> torch.Tensor:
    """Images in row-major order for a grid with one row per sample and the columns
    (x_t, x0 estimate) per kept step, then the final sample: [N * (2K + 1), C, H, W]."""
    k, n = traj.x_t.shape[:2]
    cells = []
    for j in range(n):
        for i in range(k):
            cells += [traj.x_t[i, j], traj.x0_hat[i, j]]
        cells.append(traj.sample[j])
    return torch.stack(cells)


def trajectory_grid(traj: Trajectory, pixel_range=None) -> np.ndarray:
    """The image grid (HxWx3 uint8) of ``trajectory_tiles``: rows = samples, 2K + 1 columns;
    black and white at the data's ``pixel_range`` ([-1, 1] if None)."""
    from difftk.diffusion.pixel_range import UNIT_RANGE
    from difftk.eval.figures import image_grid

    return image_grid(trajectory_tiles(traj), nrow=2 * len(traj.steps) + 1,
                      pixel_range=pixel_range or UNIT_RANGE)


def trajectory_rows(traj: Trajectory) -> list[dict]:
    """Per kept step: its level, the spread of x_t and of the x0 estimate, and how far the
    estimate still is from the final sample (RMS per element, averaged over samples)."""
    rows = []
    final = traj.sample.flatten(1)
    for c, i in enumerate(traj.steps):
        x0_hat = traj.x0_hat[c].flatten(1)
        rows.append({"column": c, "step": i, "alpha": traj.alpha[c], "sigma": traj.sigma[c],
                     "log_snr": traj.log_snr[c], "t": traj.times[c],
                     "x_t_std": float(traj.x_t[c].std()), "x0_hat_std": float(x0_hat.std()),
                     "x0_hat_rms_to_sample": float((x0_hat - final).square().mean(1).sqrt()
                                                   .mean())})
    return rows


def draw_trajectory(traj: Trajectory, title: str, time_label: str = "t", pixel_range=None):
    """Images: the grid with each column labelled by its step and level. 2-D data: one panel
    per kept step with the states and their x0 estimates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(traj.steps)
    if traj.x_t.dim() == 5:  # [K, N, C, H, W]
        grid = trajectory_grid(traj, pixel_range)
        n = traj.x_t.shape[1]
        width = max(6.0, 1.1 * (2 * k + 1))
        fig, ax = plt.subplots(figsize=(width, width * grid.shape[0] / grid.shape[1] + 1.2))
        ax.imshow(grid, interpolation="nearest")
        cell = grid.shape[1] / (2 * k + 1)
        labels = []
        for c in range(k):
            level = f"{time_label} {traj.times[c]:.3g}\nlogSNR {traj.log_snr[c]:.2g}"
            labels += [f"x_t, step {traj.steps[c]}\n{level}", "x0 estimate"]
        labels.append("sample")
        ax.set_xticks([(c + 0.5) * cell for c in range(2 * k + 1)])
        ax.set_xticklabels(labels, fontsize=6)
        ax.xaxis.tick_top()
        ax.set_yticks([(r + 0.5) * grid.shape[0] / n for r in range(n)])
        ax.set_yticklabels([str(r) for r in range(n)], fontsize=6)
        ax.set_ylabel("sample")
    else:
        fig, axes = plt.subplots(1, k, figsize=(2.6 * k, 2.9), squeeze=False)
        for c, ax in enumerate(axes[0]):
            x, d = traj.x_t[c].numpy(), traj.x0_hat[c].numpy()
            ax.scatter(x[:, 0], x[:, 1], s=2, c="C0", label="x_t")
            ax.scatter(d[:, 0], d[:, 1], s=2, c="C1", label="x0 estimate")
            ax.set_title(f"step {traj.steps[c]}, {time_label} {traj.times[c]:.3g}", fontsize=8)
            ax.set_aspect("equal", adjustable="datalim")
        axes[0][0].legend(fontsize=6, loc="upper right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
