"""Built-in learning-rate schedules: multipliers of the optimizer's peak lr (optim/lr_schedule.py).

``step`` below is always the number of optimizer steps completed before the one being taken
(0 at the first step), ``images`` = step x train.batch_size.
"""

from __future__ import annotations

import math

from pydantic import Field

from difftk.hookspecs import hookimpl
from difftk.optim.lr_schedule import LrSchedule, TrainingClock, WarmupThenDecay, warmup_factor


class Constant(LrSchedule):
    """The peak learning rate at every step."""

    name = "constant"

    def factor(self, clock: TrainingClock) -> float:
        return 1.0


class LinearWarmup(LrSchedule):
    """Linear warm-up, then the peak: min(1, (step + 1) / warmup_steps) (DDPM, Ho et al. 2020).

    DDPM warms up over 5000 steps; this is what train.lr_warmup_steps used to set.
    """

    name = "linear_warmup"
    warmup_steps: int = Field(1000, ge=1, description="steps of linear warm-up from lr / "
                              "warmup_steps to lr")

    def factor(self, clock: TrainingClock) -> float:
        return warmup_factor(clock.step, self.warmup_steps)


class Cosine(WarmupThenDecay):
    """Warm-up, then cosine decay to a floor r: r + (1 - r) (1 + cos(pi p)) / 2 (SGDR, 2017).

    Loshchilov & Hutter 2017 without restarts; the decay spans warmup_steps..total_steps.
    """

    name = "cosine"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="floor r: the factor at the end "
                                "of the decay")

    def decay(self, progress: float) -> float:
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class LinearDecay(WarmupThenDecay):
    """Warm-up, then linear decay to a floor r: 1 - (1 - r) p.

    EDM2's linear_learning_rate_schedule is r = 0 without warm-up.
    """

    name = "linear_decay"
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="floor r: the factor at the end "
                                "of the decay")

    def decay(self, progress: float) -> float:
        return 1 - (1 - self.min_lr_ratio) * progress


class Step(LrSchedule):
    """gamma^floor(step / step_size): PyTorch's StepLR, as seed 004 trains its ScoreNet.

    Stepped once per optimizer step (seed 004 decays by 0.1 every 20 or 30 epochs: give
    step_size in steps); an optional linear warm-up multiplies it.
    """

    name = "step"
    step_size: int = Field(1000, ge=1, description="optimizer steps between two decays "
                           "(epochs x batches per epoch for an epoch-based StepLR)")
    gamma: float = Field(0.1, gt=0, le=1, description="factor applied at each decay")
    warmup_steps: int = Field(0, ge=0, description="steps of linear warm-up from lr / "
                              "warmup_steps to lr")

    def factor(self, clock: TrainingClock) -> float:
        decay = self.gamma ** (clock.step // self.step_size)
        return warmup_factor(clock.step, self.warmup_steps) * decay


class InverseSqrt(LrSchedule):
    """EDM2's 1 / sqrt(max(t / t_ref, 1)), t in images, with a ramp-up (Karras et al. 2024).

    t is the images seen, t_ref = ref_batches x batch size, and the linear ramp-up
    min(t / t_warmup, 1) runs over warmup_kimg thousand images, as EDM2's
    learning_rate_schedule counts both (so its first step, at t = 0, takes lr 0).
    """

    name = "inverse_sqrt"
    ref_batches: float = Field(70000, ge=0, description="t_ref in optimizer steps (EDM2's "
                               "--decay; 70k batches of 2048 images); 0: no decay")
    warmup_kimg: float = Field(10000, ge=0, description="linear ramp-up length in thousands "
                               "of images (EDM2's rampup_Mimg = 10); 0: no ramp-up")

    def factor(self, clock: TrainingClock) -> float:
        t = clock.images
        out = 1.0
        if self.ref_batches > 0:
            out /= math.sqrt(max(t / (self.ref_batches * clock.batch_size), 1.0))
        if self.warmup_kimg > 0:
            out *= min(t / (self.warmup_kimg * 1000), 1.0)
        return out


@hookimpl
def register_lr_schedules(register):
    for cls in (Constant, LinearWarmup, Cosine, LinearDecay, Step, InverseSqrt):
        register(cls)
