"""Training metrics between two log lines: accumulated on the device, read once per window.

Each applied step adds its losses, loss by noise-level bucket, gradient norms and drawn
noise levels to device tensors, so logging costs no host sync per step; ``flush`` reads
them once every ``log.every`` steps, writes the scalars and starts a new window. Skipped
steps (NaN guard, fp16 overflow) are counted by the guard, not averaged here.

Under torchrun each process holds its own items' sums; the flush adds them over the
processes (one all-reduce per window), so the logged losses, buckets, histogram and
images per second are those of the global batch. Each process also times its own steps;
the slowest and fastest process's mean step time are logged, so a straggler shows up.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from difftk.analysis.variance_gradients import NAMES as VARIANCE_GRADIENT_NAMES
from difftk.errors import TrainingDivergedError
from difftk.run.run_logger import RunLogger
from difftk.run.runtime import Runtime
from difftk.train.step import StepResult

# Loss-by-noise-level buckets: ln(EDM sigma) in [-6, 6) split into 8 bins.
BUCKET_LO, BUCKET_WIDTH, BUCKETS = -6.0, 1.5, 8


class MetricWindow:
    def __init__(self, runtime: Runtime, global_batch: int):
        self.runtime, self.global_batch = runtime, global_batch
        self.device = device = runtime.device
        self.loss_sum = torch.zeros((), device=device)
        self.items = torch.zeros((), device=device)
        self.bucket_sum = torch.zeros(BUCKETS, device=device)
        self.bucket_count = torch.zeros(BUCKETS, device=device)
        self.norm_before = torch.zeros((), device=device)
        self.norm_after = torch.zeros((), device=device)
        self.clipped = torch.zeros((), device=device)
        self.applied = torch.zeros((), device=device)  # steps that changed the weights
        # a learned variance's gradients: [figure, bucket] sums and counts of finite values
        self.variance_sum = torch.zeros(len(VARIANCE_GRADIENT_NAMES), BUCKETS, device=device)
        self.variance_count = torch.zeros(len(VARIANCE_GRADIENT_NAMES), BUCKETS, device=device)
        self.has_variance = False
        self.log_sigmas: list[torch.Tensor] = []
        self.forward_results: list[StepResult] = []
        self.steps = 0
        self.images = 0
        self.started = time.perf_counter()

    def add(self, result: StepResult) -> None:
        """Count one step: nothing for a skipped one; a step whose ``applied`` is a device
        flag (the NaN guard's verdict left on the device) adds its figures masked by it."""
        if result.applied is False:
            return
        mask = result.applied if isinstance(result.applied, torch.Tensor) else None
        per_sample = result.per_sample.float()
        log_sigma = torch.log(result.levels.sigma_edm.to(self.device).float())
        bucket = ((log_sigma - BUCKET_LO) / BUCKET_WIDTH).floor().clamp(0, BUCKETS - 1).long()
        nb, na = result.grad_norm_before.to(self.device), result.grad_norm_after.to(self.device)
        counted = torch.ones_like(per_sample)
        if mask is not None:
            per_sample, counted = torch.where(mask, per_sample, 0.0), counted * mask
            nb, na = torch.where(mask, nb, 0.0), torch.where(mask, na, 0.0)
        self.bucket_sum.index_add_(0, bucket, per_sample)
        self.bucket_count.index_add_(0, bucket, counted)
        if result.variance_gradients is not None:
            self._add_variance_gradients(result.variance_gradients.to(self.device).float(),
                                         bucket, counted)
        self.loss_sum += per_sample.sum()
        self.items += counted.sum()
        self.norm_before += nb
        self.norm_after += na
        self.clipped += (na < nb * (1 - 1e-6)).float()
        self.applied += 1 if mask is None else mask.float()
        self.log_sigmas.append(log_sigma)
        self.forward_results.append(result)
        self.steps += 1

    def _add_variance_gradients(self, figures: torch.Tensor, bucket: torch.Tensor,
                                counted: torch.Tensor) -> None:
        """Add [B, 3] per-item variance gradients to their buckets (non-finite ones left out:
        learned_range's undefined chain rule, or a step the guard skips)."""
        self.has_variance = True
        finite = torch.isfinite(figures) & (counted[:, None] > 0)
        for i in range(figures.shape[1]):
            self.variance_sum[i].index_add_(0, bucket, torch.where(finite[:, i], figures[:, i], 0.0))
            self.variance_count[i].index_add_(0, bucket, finite[:, i].float())

    def _log_variance_gradients(self, step: int, logger: RunLogger) -> None:
        """variance_gradient/<figure>/ln_sigma_<lo>_<hi>: the mean |dL/d .| per item, and /all."""
        both = self.runtime.sum_(torch.stack([self.variance_sum, self.variance_count])).cpu()
        sums, counts = both[0], both[1]
        for i, name in enumerate(VARIANCE_GRADIENT_NAMES):
            if counts[i].sum() > 0:
                logger.scalar(f"variance_gradient/{name}/all",
                              float(sums[i].sum() / counts[i].sum()), step)
            for b in range(BUCKETS):
                if counts[i, b] > 0:
                    lo = BUCKET_LO + b * BUCKET_WIDTH
                    logger.scalar(f"variance_gradient/{name}/ln_sigma_{lo:+.1f}_{lo + BUCKET_WIDTH:+.1f}",
                                  float(sums[i, b] / counts[i, b]), step)

    def flush(self, step: int, logger: RunLogger, scalars: dict[str, float],
              checkpoints: Path) -> float:
        """Write the window's means (and ``scalars``) at ``step``; return the mean loss.

        A non-finite mean loss (the NaN guard off) ends training with a sentence.
        """
        n = self.steps
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rt = self.runtime
        sums = rt.sum_(torch.cat([self.loss_sum.reshape(1), self.items.reshape(1),
                                  self.bucket_sum, self.bucket_count]))
        loss = float(sums[0] / sums[1])
        if not math.isfinite(loss):
            from difftk.run.checkpoint import describe_intact

            where = describe_intact(checkpoints)  # checked file by file, not assumed
            raise TrainingDivergedError(
                f"the loss became non-finite between steps {step - n + 1} and {step}; {where}")
        logger.scalar("loss/train", loss, step)
        applied = max(float(self.applied), 1.0)
        logger.scalar("grad_norm/before_clip", float(self.norm_before) / applied, step)
        logger.scalar("grad_norm/after_clip", float(self.norm_after) / applied, step)
        logger.scalar("grad_norm/clipped_fraction", float(self.clipped) / applied, step)
        logger.scalar("images_per_second", n * self.global_batch / elapsed, step)
        if rt.world_size > 1:  # forward time: each process's own work, without waiting
            own = sum(r.forward_seconds() for r in self.forward_results) / n
            per_rank = rt.gather(torch.tensor([own], device=self.device)).cpu()
            logger.scalar("forward_time/slowest_rank_s", float(per_rank.max()), step)
            logger.scalar("forward_time/fastest_rank_s", float(per_rank.min()), step)
        for tag, value in scalars.items():
            logger.scalar(tag, value, step)
        sums, counts = sums[2:2 + BUCKETS].cpu(), sums[2 + BUCKETS:].cpu()
        for i in range(BUCKETS):
            if counts[i] > 0:
                lo = BUCKET_LO + i * BUCKET_WIDTH
                logger.scalar(f"loss_by_sigma/ln_sigma_{lo:+.1f}_{lo + BUCKET_WIDTH:+.1f}",
                              float(sums[i] / counts[i]), step)
        if self.has_variance:
            self._log_variance_gradients(step, logger)
        if self.log_sigmas:
            drawn = rt.gather(torch.cat(self.log_sigmas))
            logger.histogram("ln_sigma_drawn", drawn.cpu(), step)
        self.reset()
        return loss

    def reset(self) -> None:
        for t in (self.loss_sum, self.items, self.bucket_sum, self.bucket_count,
                  self.norm_before, self.norm_after, self.clipped, self.applied,
                  self.variance_sum, self.variance_count):
            t.zero_()
        self.log_sigmas.clear()
        self.forward_results.clear()
        self.steps = 0
        self.started = time.perf_counter()
