"""The orthonormal type-II discrete cosine transform of images, whole or in blocks.

DCT-II matrix (Ahmed, Natarajan & Rao 1974), orthonormal so that its inverse is its
transpose: M[k, n] = sqrt(2 / N) c_k cos(pi (n + 1/2) k / N), c_0 = 1/sqrt(2), c_k = 1.
A channel X [H, W] becomes Z = M_H X M_W^T. Whole image: latents [C, k, k], the k x k
lowest frequencies (k = H = W keeps all). Blockwise (JPEG's 8 x 8): each b x b block is
transformed, and its k x k lowest frequencies become k^2 channels of a [C k^2, H/b, W/b]
image, so a U-Net still sees a spatial grid. Dropped coefficients decode as zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from difftk.latents.latents import LatentCodec


def dct_matrix(n: int) -> Tensor:
    """The orthonormal DCT-II matrix [n, n] (rows are frequencies), in float64."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = math.sqrt(2.0 / n) * torch.cos(math.pi * (i + 0.5) * k / n)
    m[0] /= math.sqrt(2.0)
    return m


class DctCodec(LatentCodec):
    """Whole-image (block = 0) or blockwise DCT keeping the k x k lowest frequencies."""

    def __init__(self, pixel_shape, block: int, keep: int):
        c, h, w = pixel_shape
        bh, bw = (h, w) if block == 0 else (block, block)
        kh, kw = min(keep or bh, bh), min(keep or bw, bw)
        latent = (c, kh, kw) if block == 0 else (c * kh * kw, h // bh, w // bw)
        super().__init__(pixel_shape, latent)
        self.block, self.kh, self.kw, self.bh, self.bw = block, kh, kw, bh, bw
        self.lossless = (kh, kw) == (bh, bw)
        self.register_buffer("mh", dct_matrix(bh)[:kh].float())  # [kh, bh]: kept frequencies
        self.register_buffer("mw", dct_matrix(bw)[:kw].float())

    def encode(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        blocks = x.float().reshape(n, c, h // self.bh, self.bh, w // self.bw, self.bw)
        # Z = M_H X M_W^T on every block: [n, c, gh, gw, kh, kw]
        z = torch.einsum("ai,ncgihj,bj->ncghab", self.mh, blocks, self.mw)
        if self.block == 0:
            return z[:, :, 0, 0]
        gh, gw = z.shape[2], z.shape[3]
        return z.permute(0, 1, 4, 5, 2, 3).reshape(n, c * self.kh * self.kw, gh, gw)

    def decode(self, z: Tensor) -> Tensor:
        c, h, w = self.pixel_shape
        n = z.shape[0]
        gh, gw = h // self.bh, w // self.bw
        if self.block == 0:
            coeffs = z.float().reshape(n, c, 1, 1, self.kh, self.kw)
        else:
            coeffs = z.float().reshape(n, c, self.kh, self.kw, gh, gw).permute(0, 1, 4, 5, 2, 3)
        # X = M_H^T Z M_W per block (dropped frequencies are zero)
        blocks = torch.einsum("ai,ncghab,bj->ncgihj", self.mh, coeffs, self.mw)
        return blocks.reshape(n, c, h, w)
