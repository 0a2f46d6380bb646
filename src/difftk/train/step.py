"""One optimisation step, as DESIGN.md's "A training step, as data flows" writes it.

noise level -> noise -> denoise -> weighted loss -> backward under the precision policy
-> unscale -> clip -> NaN guard / loss scaler verdict -> optimizer step -> EMA update.
The step reports what happened in a ``StepResult``; what the loop does with a verdict
(restore a checkpoint, stop) is the loop's business.

The step never waits for the device when the optimizer can skip its update on a device
flag (torch's fused Adam / AdamW, ``found_inf``): finiteness stays on the device, the
optimizer and the EMA skip on it, and the NaN guard's counters are read on the host only
every ``check_every`` steps (train/nan_guard.py). The parameter list that clipping walks is
listed once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from difftk.diffusion.levels import Levels
from difftk.optim.clipping import Clipping
from difftk.optim.ema import EmaModel
from difftk.optim.param_groups import set_learning_rate
from difftk.run.runtime import Runtime
from difftk.train.draws import StepNoise
from difftk.train.nan_guard import NanGuard, nonfinite_injection
from difftk.train.strategy import full_tensor, gradient_sync


@dataclass
class StepResult:
    """What one optimisation step did; every tensor is detached and stays on the device."""

    per_sample: Tensor  # [B / world size] fp32 losses of this process's items
    levels: Levels  # the noise levels drawn for them
    grad_norm_before: Tensor  # global gradient norm before clipping (unscaled)
    grad_norm_after: Tensor
    applied: bool | Tensor  # whether the weights (and the EMA) changed; a device bool when
    # the verdict stays on the device
    verdict: str  # the NaN guard's: "ok", "skip", "restore" or "stop"
    forward_marks: list = field(default_factory=list)  # (start, end) of each forward pass
    # [B / world size, 3]: per item the gradient its loss sends to a learned variance
    # (analysis/variance_gradients.py); None without one
    variance_gradients: Tensor | None = None

    def forward_seconds(self) -> float:
        """This process's time in forward passes: local work, before any gradient is averaged."""
        return sum(a.elapsed_time(b) / 1000 if isinstance(a, torch.cuda.Event) else b - a
                   for a, b in self.forward_marks)


def clock_mark(device: torch.device):
    """A point in time on ``device``: a CUDA event (no host sync) or the host clock."""
    if device.type == "cuda":
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event
    return time.perf_counter()


class OptimisationStep:
    """The parts of a recipe that one step runs through, and the step itself.

    The batch given to a step is this process's slice of the global batch; it is split into
    ``grad_accumulation`` micro-batches whose gradients add up (the processes average theirs
    once, after the last). Each process backpropagates its items' losses summed and divided
    by its slice size, so the gradient is the global batch's mean loss's whatever the world
    size and the accumulation.
    """

    def __init__(self, model, forward, objective, optimizer, precision, scaler, clipping,
                 ema: EmaModel, guard: NanGuard, num_classes: int, noise: StepNoise,
                 runtime: Runtime, grad_accumulation: int = 1, variance_probe=None):
        self.model, self.forward, self.objective = model, forward, objective
        self.optimizer, self.precision, self.scaler = optimizer, precision, scaler
        self.clipping, self.ema, self.guard = clipping, ema, guard
        self.num_classes, self.noise, self.runtime = num_classes, noise, runtime
        self.device = runtime.device
        self.accumulation = grad_accumulation
        self.variance_probe = variance_probe
        self._inject_nonfinite = nonfinite_injection()  # test hook, environment only
        # Walking the module tree for the parameters every step costs more than clipping a
        # small network's gradients: list them once (rules that group by module walk it).
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._plain_clip = type(clipping).clip_model is Clipping.clip_model
        # The device-side skip: an optimizer that reads ``found_inf`` (torch's fused ones
        # do; GradScaler drives the same flag), no loss scaler, the guard on.
        self._skip_on_device = (guard.enabled and scaler is None
                                and bool(getattr(optimizer, "defaults", {}).get("fused"))
                                and getattr(optimizer, "_step_supports_amp_scaling", False))

    def condition(self, labels: Tensor | None, dropped: Tensor | None) -> Tensor | None:
        """The labels the network sees: none for an unconditional model; for a conditional
        one, those ``dropped`` replaced by the null label (index num_classes)."""
        if not self.num_classes or labels is None:
            return None
        if dropped is None:
            return labels
        return torch.where(dropped, torch.full_like(labels, self.num_classes), labels)

    def __call__(self, x0: Tensor, labels: Tensor | None, step: int, lr: float) -> StepResult:
        """Optimizer step number ``step + 1`` on this process's slice (x0, labels) of the
        global batch, at learning rate ``lr``."""
        set_learning_rate(self.optimizer, lr)  # x each parameter group's multiplier
        local = x0.shape[0]
        first = self.runtime.rank * local  # where this slice starts in the global batch
        draws = self.noise.at(step).part(slice(first, first + local))
        micro = local // self.accumulation
        losses, total, marks = [], torch.zeros((), device=self.device), []
        for m in range(self.accumulation):
            items = slice(m * micro, (m + 1) * micro)
            part = draws.part(items)
            x, augment_labels = part.augmented(x0[items])  # [augment], before noising
            with gradient_sync(self.forward, sync=m == self.accumulation - 1):
                start = clock_mark(self.device)
                with self.precision.autocast(self.device):
                    per_sample, _ = self.objective(
                        self.forward, x, self.condition(
                            None if labels is None else labels[items], part.dropped),
                        self.noise.generator, levels=part.levels, eps=part.eps,
                        augment_labels=augment_labels)
                loss = per_sample.float().sum() / local
                marks.append((start, clock_mark(self.device)))
                if self._inject_nonfinite is not None and self._inject_nonfinite(step + 1):
                    loss = loss * float("nan")  # the NaN guard's test hook (DIFFTK_INJECT_NONFINITE)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            losses.append(per_sample.detach())
            total += loss.detach()
        if self.noise.history is not None:  # loss-aware noise levels learn from the losses
            self._observe_losses(torch.cat(losses), draws.levels.weight)
        variance_gradients = None
        if self.variance_probe is not None:  # each item's own loss: undo the 1/local and S
            scale = float(self.scaler.get_scale()) if self.scaler is not None else 1.0
            variance_gradients = self.variance_probe.take(local / scale)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)  # clip true gradients (seed 001 §12.3)
        norm_before, norm_after = (self.clipping.clip(self._params) if self._plain_clip
                                   else self.clipping.clip_model(self.model))
        norm_before, norm_after = full_tensor(norm_before), full_tensor(norm_after)
        if self._skip_on_device:
            applied, verdict = self._apply_on_device(total, norm_before, step + 1)
        else:
            applied, verdict = self._apply(total, norm_before, step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        if isinstance(applied, Tensor):
            self.ema.update(self.model, step + 1, self.noise.batch_size, applied=applied)
        elif applied:
            self.ema.update(self.model, step + 1, self.noise.batch_size)
        return StepResult(torch.cat(losses), draws.levels, norm_before.detach(),
                          norm_after.detach(), applied, verdict, marks, variance_gradients)

    def _observe_losses(self, per_sample: Tensor, weight: Tensor | None) -> None:
        """Every process's unweighted losses, gathered in global batch order, to the history."""
        unweighted = per_sample.float() if weight is None else per_sample.float() / weight.to(
            per_sample.device).float()
        self.noise.observe(self.runtime.gather(unweighted))

    def _apply_on_device(self, loss: Tensor, grad_norm: Tensor, step: int) -> tuple[Tensor, str]:
        """The optimizer step, skipped on the device when the loss or the gradients are
        non-finite on any process; the guard's verdict when its counters are due for a
        read, "ok" in between."""
        bad = (~(torch.isfinite(loss) & torch.isfinite(grad_norm))).to(torch.int32).reshape(1)
        self.runtime.sum_(bad)  # every process skips alike (an all-reduce, no host sync)
        finite = self.guard.record(bad[0] == 0, step)
        self.optimizer.found_inf = (~finite).float()  # read by the fused kernel
        self.optimizer.step()
        return finite, self.guard.settle() if self.guard.due(step) else "ok"

    def _apply(self, loss: Tensor, grad_norm: Tensor, step: int) -> tuple[bool, str]:
        """Step unless the NaN guard (non-finite loss or gradients on any process) or the
        loss scaler refuses: (whether the weights changed, the guard's verdict). Every
        process reaches the same verdict."""
        if self.guard.enabled:
            finite = torch.isfinite(loss)
            if self.scaler is None:  # under a scaler, gradient overflow is its business
                finite = finite & torch.isfinite(grad_norm)
            if not self.runtime.all_true(finite):  # the one host sync per step the guard costs
                return False, self.guard.bad(step)
            self.guard.good()
        if self.scaler is not None:
            # The gradients are averaged before unscaling, so every process sees the same
            # overflow and the scaler takes the same decision everywhere (DDP; fp16 under
            # FSDP is refused when the run starts).
            self.scaler.step(self.optimizer)  # skips the step if the gradients overflowed
            self.scaler.update()
            applied = bool(torch.isfinite(grad_norm))
            self.guard.scaler_skipped += not applied
            return applied, "ok"
        self.optimizer.step()
        return True, "ok"
