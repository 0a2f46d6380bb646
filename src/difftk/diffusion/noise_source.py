"""Where a sampler's fresh noise comes from: one generator for the batch, or one per sample.

Samplers draw every random number through ``randn_like(x, generator)``. ``generator`` is a
``torch.Generator`` (one stream for the whole batch), or ``PerSampleNoise``: one stream per
sample, each seeded by the sample's own index (EDM's generate.py, StackedRandomGenerator),
so sample i is the same image whatever batch or process draws it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a set drawn with ``seed`` (well mixed, 63 bits)."""
    words = [seed & 0xFFFFFFFF, seed >> 32, index & 0xFFFFFFFF, index >> 32]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> np.uint64(1))


class PerSampleNoise:
    """One generator per sample of a batch (on ``device``), seeded by the sample indices."""

    def __init__(self, seed: int, indices, device):
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(sample_seed(seed, int(i)))
                           for i in indices]

    def randn(self, shape, dtype=torch.float32) -> Tensor:
        """[len(indices), *shape]: row i from sample i's own stream."""
        return torch.stack([torch.randn(tuple(shape), generator=g, device=self.device,
                                        dtype=dtype) for g in self.generators])


def randn_like(x: Tensor, generator) -> Tensor:
    """Standard normal noise of x's shape, dtype and device from ``generator``."""
    if isinstance(generator, PerSampleNoise):
        if len(generator.generators) != x.shape[0]:
            raise ValueError(f"{len(generator.generators)} sample streams for a batch of "
                             f"{x.shape[0]}")
        return generator.randn(x.shape[1:], x.dtype).to(x.device)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
