"""The random draws of optimizer step k: noise levels, noise, label dropout and the
augmentation's draws (data/augment.py) of the whole global batch, from a generator keyed by
(seed, k).

Every process draws the global batch's draws and keeps its slice, so the noise level and
noise of item i of batch k are the same whichever process (and micro-batch) trains on it,
and a run's result does not depend on its world size or ``train.grad_accumulation``.
A loss-aware distribution (``NoiseSampler.loss_history``) also reads the
run's recent losses, which every process is told in global batch order (``observe``) and the
checkpoint keeps. Drawing the whole batch and slicing is exact and cheap: a global batch's noise is one
``randn`` of the batch's size (on a GPU, microseconds against a training step), where
per-item generators would cost one generator and one kernel launch per item. Keying by
step leaves nothing to save: a resumed run draws what the interrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from difftk.data.augment import AugmentDraws
from difftk.data.batches import mix_seed
from difftk.diffusion.label_dropout import drop_labels
from difftk.diffusion.levels import Levels

NOISE_STREAM = 2  # the word that separates these draws from the batch plan's (0, 1)


@dataclass
class StepDraws:
    levels: Levels  # [B] noise levels of the global batch
    eps: Tensor  # [B, ...] noise
    dropped: Tensor | None  # [B] bool: labels replaced by the null label (None: no dropout)
    augment: AugmentDraws | None = None  # the [augment] pipeline's draws (None: not given)

    def part(self, items: slice) -> StepDraws:
        """The draws of the items ``items`` of the global batch."""
        def cut(t):
            return None if t is None else t[items]

        lv = self.levels
        levels = replace(lv, alpha=lv.alpha[items], sigma=lv.sigma[items], t=cut(lv.t),
                         weight=cut(lv.weight))
        augment = None if self.augment is None else self.augment.part(items)
        return StepDraws(levels, self.eps[items], cut(self.dropped), augment)

    def augmented(self, x0: Tensor) -> tuple[Tensor, Tensor | None]:
        """These items' images augmented, before noising, and their augmentation labels for
        the network (None where the recipe augments nothing)."""
        return (x0, None) if self.augment is None else self.augment.apply(x0)


class StepNoise:
    """Draws of the global batch of each step, from ``(seed, step)`` alone."""

    def __init__(self, seed: int, batch_size: int, shape: tuple[int, ...], noise_sampling,
                 schedule, label_dropout: float, device: torch.device,
                 dtype: torch.dtype = torch.float32, augmentation=None):
        self.seed, self.batch_size, self.shape = seed, batch_size, tuple(shape)
        self.noise_sampling, self.schedule = noise_sampling, schedule
        self.label_dropout, self.device, self.dtype = label_dropout, device, dtype
        self.augmentation = augmentation
        self.generator = torch.Generator(device)
        # A loss-aware distribution's state: told each step's global losses (observe).
        self.history = noise_sampling.loss_history(schedule)

    def at(self, step: int) -> StepDraws:
        """The draws of optimizer step ``step + 1`` (0-based ``step``, as the loop counts)."""
        gen = self.generator.manual_seed(mix_seed(self.seed, NOISE_STREAM, step))
        b = self.batch_size
        levels = self.noise_sampling.sample(b, self.schedule, gen, self.device,
                                            history=self.history).to(self.device)
        eps = torch.randn((b, *self.shape), generator=gen, device=self.device, dtype=self.dtype)
        dropped = None
        if self.label_dropout > 0:  # one formula for dropout: drop_labels on a 0/1 vector
            zeros = torch.zeros(b, dtype=torch.long, device=self.device)
            dropped = drop_labels(zeros, self.label_dropout, 1, gen).bool()
        augment = None
        if self.augmentation is not None:  # drawn last: the draws above do not move
            augment = AugmentDraws(self.augmentation,
                                   self.augmentation.draw(b, gen, self.device))
        return StepDraws(levels, eps, dropped, augment)

    def observe(self, losses: Tensor) -> None:
        """The global batch's unweighted per-sample losses of the step drawn last, in batch
        order, for a loss-aware distribution (nothing to do for a fixed one)."""
        if self.history is not None:
            self.history.observe(losses)
