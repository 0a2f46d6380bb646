"""The NaN guard: a non-finite loss or gradient never reaches the weights.

A bad step is skipped (no optimizer step, no EMA update) and counted. After
``patience`` bad steps in a row the trainer restores the last checkpoint (weights,
optimizer, EMA, loss scale; the random streams run on, so the same batch is not
replayed) and multiplies the learning rate by ``lr_factor``; after ``max_restores``
restores the next such run of bad steps stops training with NonFiniteTrainingError.
Deciding to skip needs the step's finiteness on the host: one device-to-host sync
per step (under fp16 the loss scaler already makes one, so it adds nothing there).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

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

    @classmethod
    def from_settings(cls, train) -> NanGuard:
        return cls(train.nan_guard, train.nan_patience, train.nan_lr_factor, train.nan_max_restores)

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

    COUNTERS = ("skipped", "scaler_skipped", "restores", "lr_scale")

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in self.COUNTERS}

    def load_state_dict(self, state: dict) -> None:
        for key in self.COUNTERS:
            if key in state:
                setattr(self, key, type(getattr(self, key))(state[key]))
