"""Built-in latent spaces: pixels, PCA, DCT, and a KL autoencoder difftk trains itself
(seed 001 §5.3: "a compressed latent space (learned or engineered)")."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import Field, field_validator

from difftk.errors import DataError
from difftk.hookspecs import hookimpl
from difftk.latents.latents import LatentCodec, Latents


class IdentityCodec(LatentCodec):
    identity = True
    lossless = True

    def __init__(self):
        super().__init__(None, None)

    def encode(self, x):
        return x

    def decode(self, z):
        return z


class Identity(Latents):
    """Pixels: diffusion on the data as loaded (the default; nothing is encoded)."""

    name = "identity"

    def build(self, pixels):
        return IdentityCodec()


class Pca(Latents):
    """PCA of the training split: z = U_k^T (x - mean), optionally whitened (vectors of k).

    Fitted on the training split when the run starts (float64). Without whitening the
    full transform is a rotation; whitening gives every component unit variance. The
    latents are vectors: train them with a vector network (model.name = "mlp").
    """

    name = "pca"
    components: int = Field(0, ge=0, le=1_000_000, description="principal components kept "
                            "(k); 0 keeps all (invertible)")
    whiten: bool = Field(False, description="divide each component by its standard deviation "
                         "(unit variance per latent coordinate; low-variance directions are "
                         "then noised as fast as the main ones)")
    eps: float = Field(1e-6, gt=0, description="added to each variance before whitening (pixels "
                       "that never change have variance 0)")

    def build(self, pixels):
        from difftk.latents.pca import PcaCodec, principal_components

        data = pixels()
        d = math.prod(data.shape)
        k = self.components or d
        if k > d:
            raise DataError(f"latents.components = {k} is more than the {d} values of an item "
                            f"of shape {list(data.shape)}")
        mean, values, vectors = principal_components(data.train)
        return PcaCodec(data.shape, mean, values, vectors, k, self.whiten, self.eps)


class Dct(Latents):
    """Orthonormal DCT-II of each image (or of each block), keeping the k x k lowest
    frequencies (Ahmed, Natarajan & Rao 1974; JPEG's 8 x 8 blocks)."""

    name = "dct"
    block: int = Field(0, ge=0, le=4096, description="block size b (b x b blocks, as JPEG's "
                       "8); 0 transforms the whole image")
    keep: int = Field(0, ge=0, le=4096, description="keep the k x k lowest frequencies of "
                      "each block (0 keeps all: invertible)")

    def build(self, pixels):
        from difftk.latents.dct import DctCodec

        data = pixels()
        if len(data.shape) != 3:
            raise DataError(f"latents dct transforms images [C, H, W], and the data have "
                            f"shape {list(data.shape)}")
        _, h, w = data.shape
        if self.block and (h % self.block or w % self.block):
            raise DataError(f"latents.block = {self.block} does not divide the {h}x{w} images")
        if self.keep > min(self.block or h, self.block or w):
            raise DataError(f"latents.keep = {self.keep} is more frequencies than a "
                            f"{self.block or h}x{self.block or w} block has")
        return DctCodec(data.shape, self.block, self.keep)


class Autoencoder(Latents):
    """A KL-regularised conv autoencoder's latents (Rombach et al. 2022), from a safetensors
    file that difftk train-autoencoder writes (or your own of the same layout).

    Latents are scale x the posterior mean, [latent_channels, H/f, W/f]. The shape comes
    from the JSON file beside the weights; width, latent_channels and downsample are read
    only when there is none (your own weights).
    """

    name = "autoencoder"
    weights: str = Field(..., min_length=1, description="the autoencoder's .safetensors file "
                         "(made absolute in the run's recipe.toml)")
    scale: float = Field(1.0, gt=0, description="multiplies the latents (LDM's scale_factor; "
                         "1 / latent_std of autoencoder.json gives unit variance)")
    width: int | None = Field(None, ge=8, le=4096, description="feature channels (only without "
                              "a JSON file beside the weights)")
    latent_channels: int | None = Field(None, ge=1, le=4096, description="latent channels "
                                        "(only without a JSON file beside the weights)")
    downsample: int | None = Field(None, ge=1, le=256, description="downsampling factor f, a "
                                   "power of two (only without a JSON file beside the weights)")

    @field_validator("downsample")
    @classmethod
    def _power_of_two(cls, value):
        if value is not None and value & (value - 1):
            raise ValueError("must be a power of two")
        return value

    def resolved(self):
        return self.model_copy(update={"weights": str(Path(self.weights).expanduser().resolve())})

    def build(self, pixels):
        from difftk.latents.autoencoder_codec import AutoencoderCodec
        from difftk.latents.autoencoder_files import load_autoencoder

        weights = Path(self.weights).expanduser()
        fallback = {"width": self.width, "latent_channels": self.latent_channels,
                    "downsample": self.downsample}
        channels = None
        if weights.is_file() and not weights.with_suffix(".json").is_file():
            channels = pixels().shape[0]  # your own weights: the data say how many channels
        model = load_autoencoder(weights, {**fallback, "channels": channels})
        return AutoencoderCodec(model, weights, self.scale)


@hookimpl
def register_latents(register):
    for cls in (Identity, Pca, Dct, Autoencoder):
        register(cls)
