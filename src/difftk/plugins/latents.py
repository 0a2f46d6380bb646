"""Built-in latent spaces: pixels, PCA, DCT, and a KL autoencoder difftk trains itself
(seed 001 §5.3: "a compressed latent space (learned or engineered)")."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from difftk.data.items import in_memory
from difftk.errors import DataError
from difftk.hookspecs import hookimpl
from difftk.interop.optional import DIFFUSERS
from difftk.latents.latents import LatentCodec, Latents
from difftk.optional_package import OptionalPackage


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
    in_pixel_space: ClassVar[bool] = True

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
        # a split read from storage is read whole (PCA's covariance needs every item)
        mean, values, vectors = principal_components(in_memory(data.train, 8 * 2**30))
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


class DiffusersVae(Latents):
    """A pretrained diffusers AutoencoderKL from a local folder (sd-vae-ft-ema / -mse, SDXL's,
    FLUX's): DiT's scaled latents or EDM2's per-channel normalised ones (latents/diffusers_vae.py).

    Encode a data set once with `difftk data encode` and train on the latent set it writes;
    its manifest records this codec, and training refuses latents made with another."""

    name = "diffusers_vae"
    requires: ClassVar[tuple[OptionalPackage, ...]] = (
        DIFFUSERS,)
    path: str = Field(..., min_length=1, description="local folder of the AutoencoderKL "
                      "(config.json + weights), or a pipeline folder with a vae/ inside "
                      "(made absolute in the run's recipe.toml)")
    scaling_factor: float | None = Field(None, gt=0, description="latents x this (LDM's "
                                         "scale_factor); default: the folder's config (0.18215 "
                                         "for Stable Diffusion's VAE)")
    shift_factor: float | None = Field(None, description="subtracted before scaling (FLUX's "
                                       "VAE); default: the folder's config, else 0")
    normalize: Literal["scale", "channel"] = Field("scale", description=(
        "scale: (latent - shift) x scaling_factor (DiT, SiT, LDM); channel: per-channel "
        "mean/std of the encoded set to final_std (EDM2)"))
    final_std: float = Field(0.5, gt=0, description="std of each channel after normalize = "
                             '"channel" (EDM2: 0.5, its sigma_data)')
    channel_mean: list[float] | None = Field(None, description="per-channel mean of the raw "
                                             "latents; default: the latent set's manifest")
    channel_std: list[float] | None = Field(None, description="per-channel std of the raw "
                                            "latents; default: the latent set's manifest")
    sample: Literal["mean", "encode", "batch"] = Field("mean", description=(
        "mean: the posterior mean; encode: one draw per image when encoding (DiT); batch: "
        "store mean and std, draw per training batch (EDM2)"))
    decode_dtype: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="precision of decoding for grids, sample and eval")
    decode_batch: int = Field(32, ge=1, le=65_536, description="images decoded at once")

    def resolved(self):
        return self.model_copy(update={"path": str(Path(self.path).expanduser().resolve())})

    def settings(self, config) -> dict:
        scaling = self.scaling_factor if self.scaling_factor is not None else \
            float(getattr(config, "scaling_factor", None) or 1.0)
        shift = self.shift_factor if self.shift_factor is not None else \
            float(getattr(config, "shift_factor", None) or 0.0)
        return {"scaling_factor": scaling, "shift_factor": shift, "normalize": self.normalize,
                "sample": self.sample, "final_std": self.final_std}

    def build(self, pixels):
        import torch

        from difftk.latents.diffusers_vae import DiffusersVaeCodec, load_vae, vae_folder

        root = vae_folder(self.path)
        vae = load_vae(root)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
        return DiffusersVaeCodec(vae, root, self.settings(vae.config), self.channel_mean,
                                 self.channel_std, dtype[self.decode_dtype], self.decode_batch)


@hookimpl
def register_latents(register):
    for cls in (Identity, Pca, Dct, Autoencoder, DiffusersVae):
        register(cls)
