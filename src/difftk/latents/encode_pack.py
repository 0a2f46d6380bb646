"""A data set encoded once into a latent set: packed shards of latents (data/packed.py)
written by ``difftk data encode``, with the codec's identity in the manifest.

Encoding is the packing of ``EncodedItems``: the pixels of a source, scaled to [-1, 1],
encoded in batches on the chosen device as each shard is written, so a killed encode
resumes at its first unfinished shard and several processes (torchrun) share the shards.
Where the recipe flips images, both flips are encoded (a flip of latents is not the latents
of the flipped image, docs/latents.md): split ``train_flipped`` holds item i flipped.
"""

from __future__ import annotations

import numpy as np
import torch

from difftk.data.items import Items, PixelScaling
from difftk.latents.latents import LatentCodec


class EncodedItems(Items):
    """Latents of ``pixels`` made at read time: stored pixel values mapped to [-1, 1] by
    ``white``, or (``white`` None) a split's training values as they are (a tensor or Items:
    the in-run cache of latents/encoded_data.py)."""

    def __init__(self, codec: LatentCodec, pixels, white: float | None, device: torch.device,
                 batch_size: int = 64, flip: bool = False, dtype: torch.dtype = torch.float32):
        self.codec, self.pixels, self.on = codec, pixels, torch.device(device)
        self.to_unit = None if white is None else PixelScaling(float(white), (0.5,), (0.5,))
        self.batch_size, self.flip, self.store = batch_size, flip, dtype
        self.source = f"{getattr(pixels, 'source', '')} (encoded)"
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return self.pixels.shape[0]

    @property
    def item_shape(self) -> tuple[int, ...]:
        if self._shape is None:
            self._shape = tuple(self.read(np.arange(1)).shape[1:])
        return self._shape

    @property
    def stored_dtype(self) -> torch.dtype:
        return self.store

    @torch.no_grad()
    def read(self, indices: np.ndarray) -> torch.Tensor:
        parts = []
        for start in range(0, len(indices), self.batch_size):
            index = np.asarray(indices[start:start + self.batch_size])
            if self.to_unit is None:
                x = self.pixels[torch.as_tensor(index)].to(self.on).float()
            else:
                x = self.to_unit(self.pixels.read(index).to(self.on))
            if self.flip:
                x = x.flip(-1)
            encode = getattr(self.codec, "encode_stored", self.codec.encode)
            parts.append(encode(x).to("cpu", self.store))
        return torch.cat(parts)

    def digest(self) -> str:
        return self.pixels.digest()


def channel_moments(mean: np.ndarray, m2: np.ndarray, count: int, sample: str, channels: int
                    ) -> tuple[list[float], list[float]]:
    """Per-channel (mean, std) of the raw latents a training batch sees, from a latent set's
    stored moments: of the stored values, or for stored (mean, std) pairs (sample = "batch")
    of mean + std x N(0, 1): E = E[mean], Var = Var[mean] + E[std^2]."""
    if sample != "batch":
        return mean.tolist(), np.sqrt(m2 / max(count - 1, 1)).tolist()
    mu, var_mu = mean[:channels], m2[:channels] / max(count - 1, 1)
    s_mean, s_var = mean[channels:], m2[channels:] / max(count - 1, 1)
    return mu.tolist(), np.sqrt(var_mu + s_var + s_mean**2).tolist()
