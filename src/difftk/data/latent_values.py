"""How the stored values of a latent set become training values (data/items.py's scaling).

- ``ChannelAffine``: z = x * scale_c + bias_c per channel: EDM2's normalisation of raw VAE
  latents to a chosen std (Karras et al. 2024, App. B.1: (x - mean_c) / std_c x 0.5), or the
  identity for latents stored already scaled (DiT's x 0.18215).
- ``PosteriorDraw``: items stored as the posterior's (mean, std), 2c channels, as EDM2's
  ``dataset_tool.py encode`` stores them; each training batch draws mean + std x eps, then
  the affine map. eps for batch k is drawn for the whole global batch from (seed, k) and
  each process takes its slice, so the draw does not depend on the world size (as the
  training noise, data/batches.py). Held-out reads (validation, metrics) take the mean.
"""

from __future__ import annotations

import torch
from torch import Tensor


class ChannelAffine:
    def __init__(self, scale: list[float], bias: list[float]):
        self.scale, self.bias = list(scale), list(bias)

    def _params(self, x: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (torch.tensor(self.scale, dtype=torch.float32, device=x.device).view(shape),
                torch.tensor(self.bias, dtype=torch.float32, device=x.device).view(shape))

    def __call__(self, raw: Tensor) -> Tensor:
        scale, bias = self._params(raw)
        return raw.float() * scale + bias


class PosteriorDraw:
    """Stored (mean, std) pairs -> one draw per training batch (or the mean), then affine."""

    def __init__(self, affine: ChannelAffine, seed: int):
        self.affine, self.seed = affine, seed

    @staticmethod
    def value_shape(stored_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (stored_shape[0] // 2, *stored_shape[1:])

    def __call__(self, raw: Tensor) -> Tensor:
        mean, _ = raw.float().chunk(2, dim=1)
        return self.affine(mean)

    def noise(self, k: int, global_batch: int, part: slice, value_shape, device) -> Tensor:
        from difftk.data.batches import mix_seed

        gen = torch.Generator().manual_seed(mix_seed(self.seed, 4, k))
        eps = torch.randn((global_batch, *value_shape), generator=gen)[part]
        return eps.to(device)

    def drawn(self, raw: Tensor, eps: Tensor) -> Tensor:
        mean, std = raw.float().chunk(2, dim=1)
        return self.affine(mean + std * eps)
