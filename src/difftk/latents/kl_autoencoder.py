"""A small KL-regularised convolutional autoencoder (Rombach et al. 2022, "High-Resolution
Image Synthesis with Latent Diffusion Models", §3 and App. G; seed 001 §5.3).

Encoder: conv -> per level (residual block, stride-2 conv) -> residual block -> GroupNorm,
SiLU, conv to 2 x latent_channels (the posterior's mean and log-variance). The decoder
mirrors it with nearest-neighbour upsampling. A downsampling factor f = 2^levels maps
[C, H, W] pixels to [latent_channels, H/f, W/f] latents.

Loss per image (LDM's AutoencoderKL sums both terms over an image and averages over the
batch): ||x - D(z)||^2 + beta KL(q(z|x) || N(0, I)), z = mu + sigma eps drawn with the
reparameterisation trick (Kingma & Welling 2014). LDM also adds a perceptual (LPIPS) and an
adversarial term; difftk's reconstruction is the plain squared error (no pretrained network,
nothing downloaded), so samples are blurrier than LDM's at the same f.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# LDM's DiagonalGaussianDistribution clamps the log-variance to this range.
LOGVAR_RANGE = (-30.0, 20.0)


@dataclass(frozen=True)
class AutoencoderShape:
    """What the weights' layout depends on: written as JSON beside the safetensors file."""

    channels: int  # pixel channels
    width: int  # feature channels of every level
    latent_channels: int
    downsample: int  # f, a power of two

    @property
    def levels(self) -> int:
        return int(math.log2(self.downsample))

    def to_dict(self) -> dict:
        return asdict(self)


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per item, summed over its coordinates:
    0.5 sum(mean^2 + exp(logvar) - 1 - logvar) (Kingma & Welling 2014, App. B)."""
    terms = mean.square() + logvar.exp() - 1.0 - logvar
    return 0.5 * terms.flatten(1).sum(1)


def _groups(width: int) -> int:
    return math.gcd(width, 8)


class _ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(width), width), nn.Conv2d(width, width, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(width), width), nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Encoder(nn.Module):
    def __init__(self, shape: AutoencoderShape):
        super().__init__()
        w = shape.width
        self.inp = nn.Conv2d(shape.channels, w, 3, padding=1)
        self.blocks = nn.ModuleList(_ResBlock(w) for _ in range(shape.levels))
        self.downs = nn.ModuleList(nn.Conv2d(w, w, 3, stride=2, padding=1)
                                   for _ in range(shape.levels))
        self.mid = _ResBlock(w)
        self.norm = nn.GroupNorm(_groups(w), w)
        self.out = nn.Conv2d(w, 2 * shape.latent_channels, 3, padding=1)

    def forward(self, x):
        h = self.inp(x)
        for block, down in zip(self.blocks, self.downs, strict=True):
            h = down(block(h))
        return self.out(F.silu(self.norm(self.mid(h))))


class Decoder(nn.Module):
    def __init__(self, shape: AutoencoderShape):
        super().__init__()
        w = shape.width
        self.inp = nn.Conv2d(shape.latent_channels, w, 3, padding=1)
        self.mid = _ResBlock(w)
        self.ups = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1) for _ in range(shape.levels))
        self.blocks = nn.ModuleList(_ResBlock(w) for _ in range(shape.levels))
        self.norm = nn.GroupNorm(_groups(w), w)
        self.out = nn.Conv2d(w, shape.channels, 3, padding=1)

    def forward(self, z):
        h = self.mid(self.inp(z))
        for up, block in zip(self.ups, self.blocks, strict=True):
            h = block(up(F.interpolate(h, scale_factor=2.0, mode="nearest")))
        return self.out(F.silu(self.norm(h)))


class KLAutoencoder(nn.Module):
    """Encoder to a diagonal Gaussian posterior q(z|x), decoder back to pixels."""

    def __init__(self, shape: AutoencoderShape):
        super().__init__()
        self.shape = shape
        self.encoder = Encoder(shape)
        self.decoder = Decoder(shape)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, log-variance) of q(z|x), each [N, latent_channels, H/f, W/f]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def loss(self, x: Tensor, beta: float, generator: torch.Generator | None = None
             ) -> tuple[Tensor, Tensor, Tensor]:
        """(total, reconstruction, KL): each the per-image sum averaged over the batch."""
        mean, logvar = self.posterior(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + (0.5 * logvar).exp() * eps
        rec = (self.decode(z) - x).square().flatten(1).sum(1).mean()
        kl = kl_to_standard_normal(mean, logvar).mean()
        return rec + beta * kl, rec, kl
