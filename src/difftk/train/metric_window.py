"""Training metrics between two log lines: accumulated on the device, read once per window.

Each applied step adds its losses, loss by noise-level bucket, gradient norms and drawn
noise levels to device tensors, so logging costs no host sync per step; ``flush`` reads
them once every ``log.every`` steps, writes the scalars and starts a new window. Skipped
steps (NaN guard, fp16 overflow) are counted by the guard, not averaged here.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from difftk.errors import TrainingDivergedError
from difftk.train.run_logger import RunLogger
from difftk.train.step import StepResult

# Loss-by-noise-level buckets: ln(EDM sigma) in [-6, 6) split into 8 bins.
BUCKET_LO, BUCKET_WIDTH, BUCKETS = -6.0, 1.5, 8


class MetricWindow:
    def __init__(self, device: torch.device):
        self.device = device
        self.loss_sum = torch.zeros((), device=device)
        self.bucket_sum = torch.zeros(BUCKETS, device=device)
        self.bucket_count = torch.zeros(BUCKETS, device=device)
        self.norm_before = torch.zeros((), device=device)
        self.norm_after = torch.zeros((), device=device)
        self.clipped = torch.zeros((), device=device)
        self.log_sigmas: list[torch.Tensor] = []
        self.steps = 0
        self.images = 0
        self.started = time.perf_counter()

    def add(self, result: StepResult, images: int) -> None:
        """Count one applied step of ``images`` training images."""
        per_sample = result.per_sample.float()
        log_sigma = torch.log(result.levels.sigma_edm.to(self.device).float())
        bucket = ((log_sigma - BUCKET_LO) / BUCKET_WIDTH).floor().clamp(0, BUCKETS - 1).long()
        self.bucket_sum.index_add_(0, bucket, per_sample)
        self.bucket_count.index_add_(0, bucket, torch.ones_like(per_sample))
        self.loss_sum += per_sample.mean()
        nb, na = result.grad_norm_before.to(self.device), result.grad_norm_after.to(self.device)
        self.norm_before += nb
        self.norm_after += na
        self.clipped += (na < nb * (1 - 1e-6)).float()
        self.log_sigmas.append(log_sigma)
        self.steps += 1
        self.images += images

    def flush(self, step: int, logger: RunLogger, scalars: dict[str, float],
              last_checkpoint: Path | None) -> float:
        """Write the window's means (and ``scalars``) at ``step``; return the mean loss.

        A non-finite mean loss (the NaN guard off) ends training with a sentence.
        """
        n = self.steps
        loss = float(self.loss_sum) / n
        if not math.isfinite(loss):
            where = f"the last checkpoint ({last_checkpoint.name}) is intact" if last_checkpoint \
                else "no checkpoint had been written"
            raise TrainingDivergedError(
                f"the loss became non-finite between steps {step - n + 1} and {step}; {where}")
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        logger.scalar("loss/train", loss, step)
        logger.scalar("grad_norm/before_clip", float(self.norm_before) / n, step)
        logger.scalar("grad_norm/after_clip", float(self.norm_after) / n, step)
        logger.scalar("grad_norm/clipped_fraction", float(self.clipped) / n, step)
        logger.scalar("images_per_second", self.images / elapsed, step)
        for tag, value in scalars.items():
            logger.scalar(tag, value, step)
        sums, counts = self.bucket_sum.cpu(), self.bucket_count.cpu()
        for i in range(BUCKETS):
            if counts[i] > 0:
                lo = BUCKET_LO + i * BUCKET_WIDTH
                logger.scalar(f"loss_by_sigma/ln_sigma_{lo:+.1f}_{lo + BUCKET_WIDTH:+.1f}",
                              float(sums[i] / counts[i]), step)
        if self.log_sigmas:
            logger.histogram("ln_sigma_drawn", torch.cat(self.log_sigmas).cpu(), step)
        self.reset()
        return loss

    def reset(self) -> None:
        for t in (self.loss_sum, self.bucket_sum, self.bucket_count, self.norm_before,
                  self.norm_after, self.clipped):
            t.zero_()
        self.log_sigmas.clear()
        self.steps = self.images = 0
        self.started = time.perf_counter()
