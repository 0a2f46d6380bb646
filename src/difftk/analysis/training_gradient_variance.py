"""Gradient variance by noise level, measured on the weights of a run while it trains
(``log.grad_variance_every``; seed 000 §3.3, seed 001 §5.2).

The measurement is ``difftk analyze gradients``' own (analysis/gradient_variance.py), run on
the live network instead of a restored checkpoint: the same fixed held-out batch and noise
every time (a fixed seed), so the per-bucket curves move only with the weights. It uses
``torch.autograd.grad``, which leaves the parameters' ``.grad`` (and the optimizer) alone, and
puts back the network's train/eval mode and each parameter's ``requires_grad`` afterwards.
"""

from __future__ import annotations

from pathlib import Path

import torch

from difftk.analysis.gradient_variance import GradientBuckets, gradient_buckets
from difftk.analysis.trained_run import TrainedRun

GRADIENT_SEED = 4321  # the same items, noise levels and noise at every measurement


def live_gradient_buckets(model: torch.nn.Module, recipe, heldout: torch.Tensor,
                          heldout_labels: torch.Tensor | None, step: int, *, targets: list[str],
                          buckets: int, samples: int) -> GradientBuckets:
    """Per (target, bucket) gradient statistics of ``model`` (the unwrapped denoiser)."""
    device = next(model.parameters()).device
    run = TrainedRun(model, recipe, heldout.float(), heldout_labels, step, Path("."), device)
    was_training = model.training
    wanted = [p.requires_grad for p in model.parameters()]
    model.eval()  # no dropout: the spread measured is the data's and the noise's, not dropout's
    try:
        return gradient_buckets(run, targets, buckets, samples, GRADIENT_SEED)
    finally:
        for p, flag in zip(model.parameters(), wanted, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def bucket_scalars(result: GradientBuckets) -> dict[str, float]:
    """The TensorBoard scalars of one measurement: per target and bucket the gradient
    variance E||g - E g||^2 and the bucket's share of the total gradient (projection)."""
    out = {}
    for row in result.rows:
        where = f"{row['target']}/bucket{row['bucket']}"
        out[f"grad_variance/{where}"] = row["grad_variance"]
        out[f"grad_share/{where}"] = row["share_projection"]
    return out


def bucket_ranges(result: GradientBuckets) -> str:
    """The logSNR range and median t of each bucket (fixed for the whole run), as text."""
    rows = [r for r in result.rows if r["target"] == result.targets[0]]
    return "\n".join(f"bucket{r['bucket']}: logSNR {r['log_snr_lo']:.2f} .. {r['log_snr_hi']:.2f}"
                     f" (median t {r['t_mid']:.4g}, {r['n']} items)" for r in rows)
