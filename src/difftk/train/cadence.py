"""The loop's cadence: which periodic events fall due after optimizer step ``step``.

Counted in optimizer steps ([log] settings; 0 switches an event off). Logging, validation,
evaluation and the gradient-variance measurement also happen at the last step, so every
curve ends at the run's final weights; the final checkpoint and sample grid are
written once after the loop, so the periodic ones skip the last step.
"""

from __future__ import annotations

from dataclasses import dataclass

from difftk.recipe import Recipe


def _every(period: int, step: int) -> bool:
    return bool(period) and step % period == 0


@dataclass
class Cadence:
    steps: int
    log_every: int
    val_every: int
    eval_every: int
    sample_every: int
    checkpoint_every: int
    snapshot_every: int
    grad_variance_every: int
    time_limit_s: float  # 0: no limit

    @classmethod
    def of(cls, recipe: Recipe) -> Cadence:
        log = recipe.log
        return cls(recipe.train.steps, log.every, log.val_every, log.eval_every, log.sample_every,
                   log.checkpoint_every, recipe.parts["ema"].snapshot_every,
                   log.grad_variance_every, 60 * recipe.train.time_limit)

    def log(self, step: int) -> bool:
        return _every(self.log_every, step) or step == self.steps

    def validate(self, step: int) -> bool:
        return bool(self.val_every) and (_every(self.val_every, step) or step == self.steps)

    def evaluate(self, step: int) -> bool:
        return bool(self.eval_every) and (_every(self.eval_every, step) or step == self.steps)

    def gradient_variance(self, step: int) -> bool:
        return bool(self.grad_variance_every) and (_every(self.grad_variance_every, step)
                                                   or step == self.steps)

    def samples(self, step: int) -> bool:
        return _every(self.sample_every, step) and step != self.steps

    def checkpoint(self, step: int) -> bool:
        return _every(self.checkpoint_every, step) and step != self.steps

    def snapshot(self, step: int) -> bool:
        return _every(self.snapshot_every, step)
