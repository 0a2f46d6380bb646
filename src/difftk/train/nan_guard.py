"""The NaN guard: a non-finite loss or gradient never reaches the weights.

A bad step is skipped (no optimizer step, no EMA update) and counted. After
``patience`` bad steps in a row the trainer restores the last checkpoint (weights,
optimizer, EMA, loss scale; the random streams run on, so the same batch is not
replayed) and multiplies the learning rate by ``lr_factor``; after ``max_restores``
restores the next such run of bad steps stops training with NonFiniteTrainingError.

Where the optimizer can skip its own update on a device flag (torch's fused Adam / AdamW
read ``found_inf``, as under a GradScaler), the verdict never leaves the device: the step
records finiteness in device counters (``record``), the optimizer and the EMA skip on the
flag, and the host reads the counters once every ``check_every`` steps (the logging
interval) and at the last step (``settle``), restoring or stopping there when a run of
``patience`` bad steps happened since the last read. Otherwise (a loss scaler, an optimizer
without a skip flag) deciding to skip needs the step's finiteness on the host: one
device-to-host sync per step (under fp16 the loss scaler already makes one).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from difftk.errors import TrainingDivergedError

# Test hook: a step list such as "5", "5,9" or "5-" (step 5 onwards) whose losses are made
# NaN. An environment variable, so no recipe or --set can switch it on by accident.
INJECT_ENV = "DIFFTK_INJECT_NONFINITE"


class NonFiniteTrainingError(TrainingDivergedError):
    """Training stopped because steps stayed non-finite after restoring a checkpoint."""

    exit_code = 3


def nonfinite_injection(spec: str | None = None) -> Callable[[int], bool] | None:
    """Parse the test hook's step list; None when it is unset."""
    spec = os.environ.get(INJECT_ENV) if spec is None else spec
    if not spec:
        return None
    singles, starts = set(), []
    for part in spec.split(","):
        part = part.strip()
        if part.endswith("-"):
            starts.append(int(part[:-1]))
        elif part:
            singles.add(int(part))
    return lambda step: step in singles or any(step >= s for s in starts)


@dataclass
class NanGuard:
    enabled: bool = True
    patience: int = 3
    lr_factor: float = 0.5
    max_restores: int = 1
    bad_in_row: int = 0
    first_bad_step: int = 0
    last_bad_step: int = 0
    skipped: int = 0  # steps the guard skipped, in total
    scaler_skipped: int = 0  # steps the fp16 loss scaler skipped (gradient overflow)
    restores: int = 0
    lr_scale: float = 1.0
    check_every: int = 1  # steps between the host's reads of the device counters
    last_step: int = 0  # the run's last step, always read (0: none)
    # Device counters since the last read: skipped steps, the current run of bad steps and
    # its first step, and the first run that reached ``patience`` (its first and last step;
    # 0 when none did). One int64 tensor, so a read is one transfer.
    _counters: Tensor | None = field(default=None, repr=False)

    SKIPPED, RUN, RUN_START, TRIP_START, TRIP_END = range(5)

    @classmethod
    def from_settings(cls, train, check_every: int = 1) -> NanGuard:
        return cls(train.nan_guard, train.nan_patience, train.nan_lr_factor,
                   train.nan_max_restores, check_every=max(1, check_every),
                   last_step=train.steps)

    def record(self, finite: Tensor, step: int) -> Tensor:
        """Count optimizer step ``step`` (1-based) on the device, without a host sync: the
        same bookkeeping as ``good`` / ``bad``, run by ``torch.where``. Returns ``finite``."""
        if self._counters is None:
            self._counters = torch.zeros(5, dtype=torch.long, device=finite.device)
        c = self._counters
        bad = (~finite).long()
        run = (c[self.RUN] + 1) * bad
        run_start = torch.where(run == 1, step, c[self.RUN_START])
        trip = (c[self.TRIP_END] == 0) & (run >= self.patience)
        c.copy_(torch.stack([c[self.SKIPPED] + bad, run, run_start,
                             torch.where(trip, run_start, c[self.TRIP_START]),
                             torch.where(trip, step, c[self.TRIP_END])]))
        return finite

    def due(self, step: int) -> bool:
        """Whether the host reads the counters after step ``step`` (1-based)."""
        return step % self.check_every == 0 or (self.last_step and step >= self.last_step)

    def settle(self) -> str:
        """Read the device counters (one host sync) and fold them into the host's: "ok",
        "skip" (bad steps, none reaching ``patience`` in a row), "restore" or "stop"."""
        if self._counters is None:
            return "ok"
        skipped, run, run_start, trip_start, trip_end = self._counters.tolist()
        self._counters[self.SKIPPED] = 0
        self._counters[self.TRIP_START] = self._counters[self.TRIP_END] = 0
        self.skipped += skipped
        if trip_end:
            self.first_bad_step, self.last_bad_step = trip_start, trip_end
            self.bad_in_row = trip_end - trip_start + 1
            return "restore" if self.restores < self.max_restores else "stop"
        self.bad_in_row = run
        if run:
            self.first_bad_step = run_start
        return "skip" if skipped else "ok"

    def good(self) -> None:
        self.bad_in_row = 0

    def bad(self, step: int) -> str:
        """Record a skipped step; "skip", "restore" or "stop"."""
        self.skipped += 1
        if self.bad_in_row == 0:
            self.first_bad_step = step
        self.bad_in_row += 1
        self.last_bad_step = step
        if self.bad_in_row < self.patience:
            return "skip"
        return "restore" if self.restores < self.max_restores else "stop"

    def bad_steps(self) -> str:
        """The current run of bad steps, e.g. "steps 2 to 4" (both ends counted)."""
        if self.first_bad_step == self.last_bad_step:
            return f"step {self.first_bad_step}"
        return f"steps {self.first_bad_step} to {self.last_bad_step}"

    def restored(self) -> None:
        self.restores += 1
        self.lr_scale *= self.lr_factor
        self.bad_in_row = 0
        if self._counters is not None:
            self._counters.zero_()

    COUNTERS = ("skipped", "scaler_skipped", "restores", "lr_scale")

    def state_dict(self) -> dict:
        if self._counters is not None:  # a checkpoint counts the skips not yet read
            self.skipped += int(self._counters[self.SKIPPED])
            self._counters[self.SKIPPED] = 0
        return {k: getattr(self, k) for k in self.COUNTERS}

    def load_state_dict(self, state: dict) -> None:
        for key in self.COUNTERS:
            if key in state:
                setattr(self, key, type(getattr(self, key))(state[key]))
