"""A user's pretrained diffusers ``AutoencoderKL`` (Stable Diffusion's VAE, sd-vae-ft-ema /
-mse, SDXL's, FLUX's 16-channel one) as a codec, loaded from a local folder (no download).

Latents as the papers train on them:

- DiT / SiT / LDM (``normalize = "scale"``): z = (latent - shift_factor) x scaling_factor,
  both read from the folder's config.json unless overridden (0.18215 and no shift for
  sd-vae-ft-*; Rombach et al. 2022 §4.3.2 and DiT's ``extract_features.py``).
- EDM2 (``normalize = "channel"``): z = (latent - mean_c) / std_c x final_std per channel,
  with mean_c, std_c measured over the encoded training set (EDM2's ``StabilityVAEEncoder``
  hard-codes those of ImageNet-512: raw_mean [5.81, 3.25, 0.12, -2.15], raw_std [4.17,
  4.62, 3.71, 3.28], final_std 0.5; Karras et al. 2024, App. B.1).

``sample`` says what a latent is: the posterior mean ("mean", deterministic), one draw at
encode time ("encode": DiT's ``latent_dist.sample()``), or a draw per training batch from
the stored mean and std ("batch": EDM2 stores both, 2c channels, and samples as it trains;
the draw is part of the batch plan, data/batches.py).

Pixels enter in [-1, 1], the data sets' default scaling, as the VAE was trained.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import Tensor

from difftk.errors import DataError
from difftk.latents.latents import LatentCodec

WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def vae_folder(path: str | Path) -> Path:
    """The local AutoencoderKL folder (or the ``vae`` folder inside a pipeline's folder)."""
    root = Path(path).expanduser()
    if (root / "vae" / "config.json").is_file() and not (root / "config.json").is_file():
        root = root / "vae"
    if not (root / "config.json").is_file():
        raise DataError(f"{path}: is not a local diffusers AutoencoderKL folder (no config.json); "
                        "difftk does not download weights: save the VAE once with "
                        'AutoencoderKL.from_pretrained("NAME").save_pretrained("DIR")')
    if not any((root / f).is_file() for f in WEIGHT_FILES):
        raise DataError(f"{root}: holds config.json but no weights ({' or '.join(WEIGHT_FILES)})")
    return root


def folder_digest(root: Path) -> str:
    """sha256 of the config and weights files: the identity of the autoencoder."""
    h = hashlib.sha256()
    for name in ("config.json", *WEIGHT_FILES):
        path = root / name
        if path.is_file():
            h.update(name.encode())
            with open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    h.update(chunk)
    return h.hexdigest()


def load_vae(root: Path):
    from diffusers import AutoencoderKL

    try:
        vae = AutoencoderKL.from_pretrained(str(root), local_files_only=True,
                                            low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"{root}: could not be loaded as a diffusers AutoencoderKL ({exc})") from None
    return vae.eval().requires_grad_(False)


class DiffusersVaeCodec(LatentCodec):
    """encode: pixels [N, 3, H, W] in [-1, 1] -> latents; decode: back, in ``decode_dtype``."""

    def __init__(self, vae, root: Path, settings: dict, channel_mean: list[float] | None = None,
                 channel_std: list[float] | None = None, decode_dtype: torch.dtype = torch.float32,
                 batch_size: int = 32):
        super().__init__(None, None)
        self.vae, self.root, self.settings = vae, root, dict(settings)
        self.decode_dtype, self.batch_size = decode_dtype, batch_size
        self.scaling_factor = float(settings["scaling_factor"])
        self.shift_factor = float(settings["shift_factor"])
        self.normalize = settings["normalize"]
        self.sample = settings["sample"]
        self.final_std = float(settings["final_std"])
        self.channel_mean = channel_mean
        self.channel_std = channel_std
        self.generator: torch.Generator | None = None  # seeds "encode"-time draws
        self._digest: str | None = None

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    # The affine map between the VAE's raw latents and the training values.
    def _affine(self, device) -> tuple[Tensor, Tensor]:
        c = self.latent_channels
        if self.normalize == "scale":
            scale = torch.full((c,), self.scaling_factor)
            bias = torch.full((c,), -self.shift_factor * self.scaling_factor)
        else:
            if self.channel_mean is None or self.channel_std is None:
                raise DataError(f"{self.root}: normalize = \"channel\" needs the encoded set's "
                                "per-channel mean and std (written by difftk data encode into "
                                "the latent set's manifest); encode the data set first")
            scale = self.final_std / torch.tensor(self.channel_std, dtype=torch.float64)
            bias = -torch.tensor(self.channel_mean, dtype=torch.float64) * scale
        shape = (1, c, 1, 1)
        return (scale.to(device, torch.float32).view(shape),
                bias.to(device, torch.float32).view(shape))

    def raw_posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, std) of q(latent | x) in the VAE's own units, fp32 (the VAE runs in the
        dtype its weights have)."""
        out = self.vae.encode(x.to(next(self.vae.parameters()).dtype)).latent_dist
        return out.mean.float(), out.std.float()

    def normalized(self, raw: Tensor) -> Tensor:
        scale, bias = self._affine(raw.device)
        return raw * scale + bias

    def encode(self, x: Tensor) -> Tensor:
        """Training values: the normalised mean, one normalised draw, or (sample = "batch")
        the raw mean and std stacked as 2c channels, normalised when the batch is drawn."""
        if x.shape[1] != self.vae.config.in_channels:
            raise DataError(f"{self.root}: takes {self.vae.config.in_channels}-channel images, "
                            f"not {x.shape[1]}-channel ones")
        mean, std = self.raw_posterior(x)
        if self.sample == "batch":
            return torch.cat([mean, std], 1)
        if self.sample == "encode":
            noise = torch.randn(mean.shape, generator=self.generator, device="cpu").to(mean.device)
            mean = mean + std * noise
        return self.normalized(mean)

    def encode_stored(self, x: Tensor) -> Tensor:
        """What a latent set stores (difftk data encode): the training values where they do
        not depend on the set; the raw latents where the normalisation is measured over the
        encoded set (normalize = "channel"); raw (mean, std) pairs for sample = "batch".
        The packed data set maps stored values to training values (data/latent_values.py)."""
        if self.sample == "batch" or self.normalize == "scale":
            return self.encode(x)
        mean, std = self.raw_posterior(x)
        if self.sample == "encode":
            noise = torch.randn(mean.shape, generator=self.generator, device="cpu").to(mean.device)
            mean = mean + std * noise
        return mean

    def stored_to_training(self) -> tuple[list[float], list[float]]:
        """(scale, bias) per channel from stored raw latents to training values."""
        scale, bias = self._affine("cpu")
        return scale.flatten().tolist(), bias.flatten().tolist()

    def decode(self, z: Tensor) -> Tensor:
        scale, bias = self._affine(z.device)
        raw = (z.float() - bias) / scale
        parts = []
        cast = self.decode_dtype != torch.float32
        if cast:
            self.vae.to(self.decode_dtype)
        try:
            for i in range(0, raw.shape[0], self.batch_size):
                parts.append(self.vae.decode(raw[i:i + self.batch_size].to(self.decode_dtype)
                                             ).sample.float())
        finally:
            if cast:
                self.vae.to(torch.float32)
        return torch.cat(parts) if parts else raw.new_empty((0, self.vae.config.out_channels))

    def identity_record(self) -> dict:
        """What a latent set made with this codec records, and training checks against."""
        if self._digest is None:
            self._digest = folder_digest(self.root)
        return {"name": "diffusers_vae", "weights_sha256": self._digest,
                "scaling_factor": self.scaling_factor, "shift_factor": self.shift_factor,
                "normalize": self.normalize, "sample": self.sample, "final_std": self.final_std,
                "latent_channels": self.latent_channels}

    def cache_key(self) -> str:
        return hashlib.sha256(json.dumps(self.identity_record(), sort_keys=True).encode()
                              ).hexdigest()

    def cache_dir(self) -> Path | None:
        return None  # latent sets are written by difftk data encode, where the user says
