"""The latents family's contract: a recipe part that builds a codec, and the codec itself.

A ``Latents`` component is the recipe's ``[latents]`` section (its configuration); its
``build`` returns a ``LatentCodec``, the fitted transform: a torch module with ``encode``
(pixels [N, *pixel_shape] -> latents [N, *latent_shape]) and ``decode`` (back). Diffusion
then runs on the latents (seed 001 §5.3, "Representation choice: data space vs latent
space"); samples are decoded before they become images or metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn

from difftk.component import Component
from difftk.data.dataset import DataBundle


class LatentCodec(nn.Module):
    """A fitted map between pixels and latents; ``identity`` marks pixel space itself."""

    identity: bool = False
    # decode(encode(x)) == x up to rounding: an engineered transform that keeps every
    # coefficient (the contract checks hold such a codec to a round trip).
    lossless: bool = False

    def __init__(self, pixel_shape: tuple[int, ...] | None, latent_shape: tuple[int, ...] | None):
        super().__init__()
        # None where the codec takes any size (a convolutional autoencoder): the shapes
        # then follow from the images it is given.
        self.pixel_shape = None if pixel_shape is None else tuple(pixel_shape)
        self.latent_shape = None if latent_shape is None else tuple(latent_shape)

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def cache_key(self) -> str | None:
        """A digest of what the encoding depends on besides the data (the weights), or None
        when encoding is cheap and is not worth a file on disk."""
        return None

    def cache_dir(self) -> Path | None:
        """Where encoded data sets are kept on disk (next to the weights), or None."""
        return None

    def identity_record(self) -> dict | None:
        """What a latent set encoded with this codec records in its manifest, so that
        training can refuse latents made with another codec (None: not worth encoding once)."""
        key = self.cache_key()
        return None if key is None else {"name": type(self).__name__, "key": key}


class Latents(Component):
    """The space diffusion runs in: pixels, or a transform of them (seed 001 §5.3)."""

    family: ClassVar[str] = "latents"
    # Whether the diffusion runs on the pixels themselves (their value range then applies).
    in_pixel_space: ClassVar[bool] = False

    def build(self, pixels: Callable[[], DataBundle]) -> LatentCodec:
        """The fitted codec; ``pixels()`` loads the data set (called only by a transform that
        is fitted on the training split or needs the pixel shape)."""
        raise NotImplementedError

    def resolved(self) -> Latents:
        """This part as the run's recipe.toml records it (paths made absolute), so that
        sampling from the run later finds the same files."""
        return self


@torch.no_grad()
def decode_fp32(codec: LatentCodec, z: Tensor) -> Tensor:
    """Pixels from latents with the decoder in fp32, whatever the precision policy (seed 001
    §12.4: "VAE decoder output and post-processing ... FP32")."""
    if codec.identity:
        return z
    device_type = z.device.type if z.device.type in ("cuda", "cpu") else "cpu"
    with torch.autocast(device_type, enabled=False):
        return codec.decode(z.float())
