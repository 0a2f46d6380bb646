"""Principal component analysis of the training split as an orthonormal (or whitening) codec.

Fit (float64, chunked): mean m and covariance C = (X - m)^T (X - m) / (N - 1) of the
flattened training images; C = U diag(lambda) U^T with eigenvalues in falling order.
Encode keeps the first k coordinates z = U_k^T (x - m) (Pearson 1901; Hotelling 1933); with
``whiten`` each is divided by sqrt(lambda_i + eps) so every latent coordinate has unit
variance. Decode is x = U_k z (times sqrt(lambda + eps) when whitened) + m. With k = D the
map is invertible: without whitening it is a rotation, so the diffusion sees the same
Euclidean geometry (and the same noise-to-signal ratio per direction) as in pixel space.
"""

from __future__ import annotations

import torch
from torch import Tensor

from difftk.latents.latents import LatentCodec


def principal_components(x: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor, Tensor]:
    """(mean [D], eigenvalues [D] falling, eigenvectors [D, D] as columns) of x [N, ...]."""
    flat = x.reshape(x.shape[0], -1)
    n, d = flat.shape
    mean = torch.zeros(d, dtype=torch.float64)
    for start in range(0, n, chunk):
        mean += flat[start:start + chunk].to(torch.float64).sum(0)
    mean /= n
    cov = torch.zeros(d, d, dtype=torch.float64)
    for start in range(0, n, chunk):
        part = flat[start:start + chunk].to(torch.float64) - mean
        cov += part.T @ part
    cov /= max(n - 1, 1)
    values, vectors = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(values, descending=True)
    return mean, values[order].clamp_min(0), vectors[:, order]


class PcaCodec(LatentCodec):
    """z = U_k^T (x - m) [/ sqrt(lambda + eps)]: vectors of k coordinates."""

    def __init__(self, pixel_shape, mean: Tensor, values: Tensor, vectors: Tensor,
                 components: int, whiten: bool, eps: float):
        super().__init__(pixel_shape, (components,))
        self.lossless = components == mean.numel()
        scale = (values[:components] + eps).sqrt() if whiten else torch.ones(components,
                                                                            dtype=torch.float64)
        self.register_buffer("mean", mean.float())
        self.register_buffer("basis", vectors[:, :components].float().contiguous())
        self.register_buffer("scale", scale.float())
        self.register_buffer("variance", values[:components].float())

    def encode(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1).float() - self.mean
        return (flat @ self.basis) / self.scale

    def decode(self, z: Tensor) -> Tensor:
        flat = (z.float() * self.scale) @ self.basis.T + self.mean
        return flat.reshape(z.shape[0], *self.pixel_shape)
