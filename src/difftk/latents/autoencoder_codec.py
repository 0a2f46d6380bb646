"""A trained KL autoencoder as a codec: latents are ``scale`` x the posterior mean.

The mean (the posterior's mode) rather than a draw from q(z|x): the encoded data set is then
deterministic, so it is encoded once and cached. LDM's scale_factor (0.18215 for Stable
Diffusion's VAE, 1 / the latents' std) is ``scale``; difftk measures sigma_data in latent
space anyway, and autoencoder.json records the latents' std for a unit-variance scale.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch import Tensor

from difftk.errors import DataError
from difftk.latents.autoencoder_files import config_path, file_digest
from difftk.latents.kl_autoencoder import KLAutoencoder
from difftk.latents.latents import LatentCodec


class AutoencoderCodec(LatentCodec):
    def __init__(self, model: KLAutoencoder, weights: Path, scale: float):
        super().__init__(None, None)  # convolutional: [C, H, W] -> [c, H/f, W/f] for any H, W
        self.model, self.weights, self.scale = model, Path(weights), scale

    def encode(self, x: Tensor) -> Tensor:
        f = self.model.shape.downsample
        if x.shape[-1] % f or x.shape[-2] % f:
            raise DataError(f"{self.weights}: downsamples by {f}, which does not divide "
                            f"{x.shape[-2]}x{x.shape[-1]} images (choose a smaller factor)")
        mean, _ = self.model.posterior(x.float())
        return mean * self.scale

    def decode(self, z: Tensor) -> Tensor:
        return self.model.decode(z.float() / self.scale)

    def cache_key(self) -> str:
        h = hashlib.sha256(file_digest(self.weights).encode())
        config = config_path(self.weights)
        h.update(str(self.model.shape.to_dict()).encode())
        h.update(repr(float(self.scale)).encode())
        if config.is_file():
            h.update(config.read_bytes())
        return h.hexdigest()

    def cache_dir(self) -> Path:
        return self.weights.parent / f"{self.weights.stem}.latents"
