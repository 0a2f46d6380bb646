"""Gradient variance by noise level and target (seed 000 §3.3; seed 001 §5.2).

Near the optimum the per-sample MSE gradient is noise whose size follows the target's
conditional variance (seed 000 §3.3), and even at a fixed p(t) the gradient can be dominated
by some noise levels (seed 001 §5.2). We measure both on a trained network: per-sample
gradients over held-out x0 at noise levels drawn from the run's own noise-level
distribution, split into equal-count buckets of logSNR.

One backward pass per sample serves every target: at fixed x_t each target's error is the
x0 error times a per-level factor (||T_hat - T||^2 = k_T ||x0_hat - x0||^2, seed 003 eq. 5.3),
so the gradient of target T's per-sample loss is k_T times that of the x0-MSE. "edm" is the
unit-weight regression of EDM's raw network output, k_x0 / c_out^2 (seed 001 §8.1); "run" is
the run's own loss: its target, weighting and importance weight.

Per (target, bucket): the mean and std of the per-sample gradient norms, the trace of the
gradient covariance E||g - E g||^2, the norm of the bucket's mean gradient, and its share of
the total gradient G = sum_b p_b E[g | b]: share_projection = p_b E[g | b] . G / ||G||^2
(sums to 1; negative where a bucket pulls against the rest) and share_norm = p_b ||E[g | b]||
/ sum_b' p_b' ||E[g | b']||.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from difftk.analysis.trained_run import TrainedRun
from difftk.diffusion.levels import Levels, broadcast


def regression_factor(target, levels: Levels) -> torch.Tensor:
    """k with (error of what the network regresses)^2 = k (x0 error)^2, per level [B]."""
    k = target.x0_error_factor(levels).double()
    c_out = target.output_scale(levels)  # preconditioned: the network regresses (F - c_skip x) / c_out
    if c_out is not None:
        k = k / c_out.double().clamp(min=1e-12) ** 2
    return k


def loss_factors(names: list[str], run: TrainedRun, levels: Levels) -> dict[str, torch.Tensor]:
    """Per-sample factor on the x0-MSE gradient for each named target (float64 [B])."""
    from difftk.recipe import component_from_spec

    parts = run.recipe.parts
    sigma_data = getattr(parts["target"], "sigma_data", None)
    if not isinstance(sigma_data, float | int):
        sigma_data = float(run.heldout.double().std())
    out = {}
    for name in names:
        if name == "run":
            target = run.denoiser.target
            w = parts["weight"].on_target(levels, target, run.schedule).double()
            if levels.weight is not None:
                w = w * levels.weight.double()
            out[name] = w * target.x0_error_factor(levels).double()
        else:
            target = component_from_spec("target", name, defaults={"sigma_data": sigma_data})
            out[name] = regression_factor(target.bind(run.schedule), levels)
    return out


@dataclass
class GradientBuckets:
    rows: list[dict]
    targets: list[str]


def _per_sample_gradients(run: TrainedRun, x0, x_t, levels, labels):
    """Flattened gradient of each sample's per-pixel-mean x0-MSE, one backward pass each."""
    params = [p for p in run.denoiser.parameters()]
    for p in params:
        p.requires_grad_(True)
    for i in range(x0.shape[0]):
        lv = Levels(alpha=levels.alpha[i:i + 1], sigma=levels.sigma[i:i + 1],
                    t=None if levels.t is None else levels.t[i:i + 1])
        lab = None if labels is None else labels[i:i + 1]
        x0_hat = run.denoiser.x0_and_extra(x_t[i:i + 1], lv, lab)[0]
        loss = (x0_hat.float() - x0[i:i + 1]).square().mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        yield torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                         for g, p in zip(grads, params, strict=True)])


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()))


def gradient_buckets(run: TrainedRun, targets: list[str], buckets: int = 8, samples: int = 256,
                     seed: int = 0) -> GradientBuckets:
    if samples < 2 * buckets:
        raise ValueError("need at least two samples per bucket")
    gen = torch.Generator(run.device).manual_seed(seed)
    noise_sampling = run.recipe.parts["noise_sampling"]
    levels = noise_sampling.sample(samples, run.schedule, gen, run.device).to(run.device)
    order = torch.argsort(levels.log_snr.double())
    idx = torch.randint(0, run.heldout.shape[0], (samples,), generator=gen, device=run.device)
    x0 = run.heldout.to(run.device)[idx.cpu()][order.cpu()]
    labels = run.labels_for(idx[order].cpu())
    levels = Levels(alpha=levels.alpha[order], sigma=levels.sigma[order],
                    t=None if levels.t is None else levels.t[order],
                    weight=None if levels.weight is None else levels.weight[order])
    eps = torch.randn(x0.shape, generator=gen, device=run.device)
    x_t = broadcast(levels.alpha, x0) * x0 + broadcast(levels.sigma, x0) * eps
    factors = loss_factors(targets, run, levels)
    groups = torch.tensor_split(torch.arange(samples), buckets)
    log_snr = levels.log_snr.double().cpu().numpy()
    grads = _per_sample_gradients(run, x0, x_t, levels, labels)
    rows = summarise_buckets(grads, factors, groups, log_snr, run.times(log_snr))
    for param in run.denoiser.parameters():
        param.requires_grad_(False)
    return GradientBuckets(rows, list(targets))


def summarise_buckets(gradients, factors: dict[str, torch.Tensor], groups, log_snr: np.ndarray,
                      times: np.ndarray) -> list[dict]:
    """Rows per (target, bucket) from per-sample x0-MSE gradients (an iterator of flat vectors
    in sample order) and each target's per-sample factor; buckets are index groups."""
    targets = list(factors)
    n_all = sum(len(g) for g in groups)
    p = np.array([len(g) / n_all for g in groups])
    stats = []  # per bucket: target -> (mean gradient, per-sample norms)
    for group in groups:
        sums = dict.fromkeys(targets)
        norms = {t: [] for t in targets}
        for i in group.tolist():
            g = next(gradients)
            g_norm = float(g.double().norm())
            for t in targets:
                c = float(factors[t][i])
                sums[t] = c * g if sums[t] is None else sums[t] + c * g
                norms[t].append(abs(c) * g_norm)
        stats.append({t: (sums[t] / len(group), np.asarray(norms[t])) for t in targets})
    rows = []
    for t in targets:
        total = sum(p[b] * stats[b][t][0] for b in range(len(groups)))
        total_sq = _dot(total, total)
        mean_norms = np.array([_dot(s[t][0], s[t][0]) ** 0.5 for s in stats])
        for b, group in enumerate(groups):
            mean, norms = stats[b][t]
            n = len(group)
            mean_sq = _dot(mean, mean)
            # E||g - E g||^2 = E||g||^2 - ||E g||^2, unbiased over the bucket's n samples
            trace_cov = max(float((norms**2).mean()) - mean_sq, 0.0) * n / (n - 1)
            members = group.numpy()
            ls = log_snr[members]
            rows.append({
                "target": t, "bucket": b, "n": n,
                "log_snr_lo": float(ls.min()), "log_snr_hi": float(ls.max()),
                "log_snr_mid": float(np.median(ls)), "t_mid": float(np.median(times[members])),
                "grad_norm_mean": float(norms.mean()), "grad_norm_std": float(norms.std(ddof=1)),
                "grad_variance": trace_cov, "mean_grad_norm": mean_sq**0.5,
                "noise_to_signal": trace_cov / mean_sq if mean_sq > 0 else float("inf"),
                "share_projection": float(p[b] * _dot(mean, total) / total_sq)
                if total_sq > 0 else float("nan"),
                "share_norm": float(p[b] * mean_norms[b] / (p * mean_norms).sum())
                if mean_norms.sum() > 0 else float("nan"),
            })
    return rows


def draw_gradient_buckets(result: GradientBuckets, title: str):
    """Per-sample gradient norm (mean and std), gradient variance, and each bucket's share of
    the total gradient, against the bucket's median logSNR, one line per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    width = 0.8 / max(len(result.targets), 1)
    for k, target in enumerate(result.targets):
        rows = [r for r in result.rows if r["target"] == target]
        x = np.array([r["log_snr_mid"] for r in rows])
        mean = np.array([r["grad_norm_mean"] for r in rows])
        std = np.array([r["grad_norm_std"] for r in rows])
        axes[0].plot(x, mean, "o-", color=f"C{k}", label=target, ms=4)
        axes[0].fill_between(x, np.maximum(mean - std, mean * 1e-3), mean + std, color=f"C{k}",
                             alpha=0.15)
        axes[1].plot(x, [r["grad_variance"] for r in rows], "o-", color=f"C{k}", label=target,
                     ms=4)
        pos = np.arange(len(rows)) + (k - (len(result.targets) - 1) / 2) * width
        axes[2].bar(pos, [r["share_projection"] for r in rows], width, color=f"C{k}",
                    label=target)
        if k == 0:
            axes[2].set_xticks(np.arange(len(rows)))
            axes[2].set_xticklabels([f"{r['log_snr_mid']:.1f}" for r in rows], fontsize=7)
    axes[0].set_title("per-sample gradient norm (mean, band: +- std)")
    axes[1].set_title("gradient variance E||g - E g||^2")
    axes[2].set_title("share of the total gradient (projection)")
    for ax in axes[:2]:
        ax.set_yscale("log")
        ax.set_xlabel("logSNR (bucket median)")
    axes[2].set_xlabel("bucket (median logSNR)")
    axes[2].axhline(0, color="k", lw=0.5)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
