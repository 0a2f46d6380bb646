"""Learning-rate schedules: the multiplier of the optimizer's peak ``lr`` at each step.

A schedule is a pure function of where the run stands (the ``TrainingClock``): optimizer
steps completed, images seen and the run's budget, in steps (train.steps) and, where the
run has one, in time (train.time_limit: the share of it used so far). Nothing is stepped or
stored, so a resumed run continues on exactly the curve of an uninterrupted one (a
time-limited run carries its training seconds in its checkpoints).

The optimizer step with 1-based index k sees ``clock.step = k - 1`` completed steps and
``clock.images = (k - 1) * batch_size`` images, as EDM2 counts ``cur_nimg`` (Karras et al.
2024, training_loop.py) and as a torch scheduler stepped after every optimizer step counts
``last_epoch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from difftk.component import Component


@dataclass(frozen=True)
class TrainingClock:
    """Where the run stands when an optimizer step is about to be taken."""

    step: int  # optimizer steps completed before this one (0 at the first step)
    batch_size: int  # images per optimizer step: the global batch, train.batch_size
    total_steps: int  # the run's budget, train.steps
    time_fraction: float = 0.0  # share of train.time_limit used (0 without a time limit)

    @property
    def images(self) -> int:
        """Images seen before this step (EDM2's cur_nimg)."""
        return self.step * self.batch_size


class LrSchedule(Component):
    """Multiplies the optimizer's peak learning rate by factor(clock) in [0, 1] every step."""

    family: ClassVar[str] = "lr_schedules"

    def factor(self, clock: TrainingClock) -> float:
        """The multiplier of the peak lr for the step about to be taken."""
        raise NotImplementedError


def warmup_factor(step: int, warmup_steps: int) -> float:
    """min(1, (step + 1) / warmup_steps): the first step takes 1/warmup_steps of the peak and
    step warmup_steps (1-based) the peak itself; 1 without warm-up."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


class WarmupThenDecay(LrSchedule):
    """A linear warm-up over ``warmup_steps``, then ``decay(progress)`` for progress in [0, 1].

    progress = (step - warmup_steps) / (total_steps - warmup_steps), clamped to [0, 1], with
    ``step`` counted in completed steps (diffusers' get_cosine_schedule_with_warmup and
    get_linear_schedule_with_warmup count the same way). The horizon ``total_steps`` defaults
    to the run's budget, train.steps: the decay ends with the run. A run with a time limit
    ends at whichever budget runs out first, so without an explicit ``total_steps`` the
    progress is the larger of the step share and the share of the time limit used: the
    decay reaches its end when the time does, however fast the machine is.
    """

    warmup_steps: int = Field(0, ge=0, description="steps of linear warm-up from lr / "
                              "warmup_steps to lr")
    total_steps: int | None = Field(None, ge=1, description="step at which the decay reaches "
                                    "its end (warm-up included); unset: train.steps, the end "
                                    "of the run")

    def horizon(self, clock: TrainingClock) -> int:
        return self.total_steps if self.total_steps is not None else clock.total_steps

    def progress(self, clock: TrainingClock) -> float:
        span = max(self.horizon(clock) - self.warmup_steps, 1)
        progress = (clock.step - self.warmup_steps) / span
        if self.total_steps is None:
            # The time share counts from the first step (the warm-up ramp multiplies it), so
            # the factor stays continuous in time whichever budget leads.
            progress = max(progress, clock.time_fraction)
        return min(max(progress, 0.0), 1.0)

    def decay(self, progress: float) -> float:
        raise NotImplementedError

    def factor(self, clock: TrainingClock) -> float:
        return warmup_factor(clock.step, self.warmup_steps) * self.decay(self.progress(clock))
