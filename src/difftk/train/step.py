"""One optimisation step, as DESIGN.md's "A training step, as data flows" writes it.

noise level -> noise -> denoise -> weighted loss -> backward under the precision policy
-> unscale -> clip -> NaN guard / loss scaler verdict -> optimizer step -> EMA update.
The step reports what happened in a ``StepResult``; what the loop does with a verdict
(restore a checkpoint, stop) is the loop's business.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from difftk.diffusion.guidance import drop_labels
from difftk.diffusion.levels import Levels
from difftk.train.ema import EmaModel
from difftk.train.nan_guard import NanGuard, nonfinite_injection


@dataclass
class StepResult:
    """What one optimisation step did; every tensor is detached and stays on the device."""

    per_sample: Tensor  # [B] fp32 losses of this process's items
    levels: Levels  # the noise levels drawn for them
    grad_norm_before: Tensor  # global gradient norm before clipping (unscaled)
    grad_norm_after: Tensor
    applied: bool  # whether the weights (and the EMA) changed
    verdict: str  # the NaN guard's: "ok", "skip", "restore" or "stop"


class OptimisationStep:
    """The parts of a recipe that one step runs through, and the step itself."""

    def __init__(self, model, forward, objective, optimizer, precision, scaler, clipping,
                 ema: EmaModel, guard: NanGuard, num_classes: int, label_dropout: float,
                 noise_gen: torch.Generator, device: torch.device):
        self.model, self.forward, self.objective = model, forward, objective
        self.optimizer, self.precision, self.scaler = optimizer, precision, scaler
        self.clipping, self.ema, self.guard = clipping, ema, guard
        self.num_classes, self.label_dropout = num_classes, label_dropout
        self.noise_gen, self.device = noise_gen, device
        self._inject_nonfinite = nonfinite_injection()  # test hook, environment only

    def condition(self, labels: Tensor | None) -> Tensor | None:
        """The labels the network sees: none for an unconditional model; for a conditional
        one, a share ``train.label_dropout`` replaced by the null label (index num_classes)."""
        if not self.num_classes or labels is None:
            return None
        return drop_labels(labels, self.label_dropout, self.num_classes, self.noise_gen)

    def __call__(self, x0: Tensor, labels: Tensor | None, step: int, lr: float) -> StepResult:
        """Optimizer step number ``step + 1`` on the batch (x0, labels) at learning rate ``lr``."""
        labels = self.condition(labels)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.precision.autocast(self.device):
            per_sample, levels = self.objective(self.forward, x0, labels, self.noise_gen)
        loss = per_sample.float().mean()
        if self._inject_nonfinite is not None and self._inject_nonfinite(step + 1):
            loss = loss * float("nan")  # the NaN guard's test hook (DIFFTK_INJECT_NONFINITE)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # clip true gradients (seed 001 §12.3)
        else:
            loss.backward()
        norm_before, norm_after = self.clipping.clip_model(self.model)
        applied, verdict = self._apply(loss, norm_before, step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        if applied:
            self.ema.update(self.model, step + 1, x0.shape[0])
        return StepResult(per_sample.detach(), levels, norm_before.detach(), norm_after.detach(),
                          applied, verdict)

    def _apply(self, loss: Tensor, grad_norm: Tensor, step: int) -> tuple[bool, str]:
        """Step unless the NaN guard (non-finite loss or gradients) or the loss scaler refuses:
        (whether the weights changed, the guard's verdict)."""
        if self.guard.enabled:
            finite = torch.isfinite(loss)
            if self.scaler is None:  # under a scaler, gradient overflow is its business
                finite = finite & torch.isfinite(grad_norm)
            if not bool(finite):  # the one host sync per step the guard costs
                return False, self.guard.bad(step)
            self.guard.good()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the step if the gradients overflowed
            self.scaler.update()
            applied = bool(torch.isfinite(grad_norm))
            self.guard.scaler_skipped += not applied
            return applied, "ok"
        self.optimizer.step()
        return True, "ok"
