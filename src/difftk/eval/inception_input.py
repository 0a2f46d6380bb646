"""How 0-255 images become the FID Inception network's input: the three conventions in use.

Every tool feeds the same TensorFlow Inception graph (2015-12-05) images fitted to 299 x 299
and scaled to [-1, 1]; they differ in the resize and by a hair in the scaling, which moves
FID by more than many papers' improvements (Parmar et al. 2022, "On Aliased Resizing and
Surprising Subtleties in GAN Evaluation"). ``--inception-input`` names one:

- ``tf``: the TensorFlow 1 graph's own bilinear resize (source pixel = output pixel x
  in / out, no half-pixel offset) and (x - 128) / 128. This is what the original TF FID
  code, the ADM evaluator (DiT, SiT), StyleGAN's and EDM's ``fid.py`` (their TorchScript
  port resamples with the same offsets), EDM2's ``calculate_metrics.py`` and torch-fidelity
  compute; numbers from these papers use it. The default.
- ``pytorch_fid``: pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)``:
  x / 255, ``F.interpolate(..., bilinear, align_corners=False)`` (half-pixel centres), 2x - 1.
- ``clean``: clean-fid's ``mode="clean"``: each channel resized as a float image by PIL's
  bicubic filter (antialiased), clipped to [0, 255], then (x - 128) / 128.

Images at 299 x 299 are not resized by any of the three; ``tf`` and ``clean`` then agree
exactly, and ``pytorch_fid`` differs by the scaling (1/127.5 against 1/128).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from difftk.eval.inception import RESOLUTION

CONVENTIONS = ("tf", "pytorch_fid", "clean")


def _tf1_bilinear(x: Tensor, size: int) -> Tensor:
    """TensorFlow 1's ``resize_bilinear(align_corners=False)``, as torch-fidelity's
    ``interpolate_bilinear_2d_like_tensorflow1x(method="slow")`` computes it (bit-exact on
    CPU): sample at out_index * (in / out), clamp the upper neighbour at the border."""
    def axis(n_in: int):
        grid = torch.arange(size, dtype=x.dtype, device=x.device) * torch.tensor(
            n_in / size, dtype=torch.float32)
        lo = grid.long()
        return lo, (lo + 1).clamp_max(n_in - 1), grid - lo.float()

    ylo, yhi, dy = axis(x.shape[2])
    xlo, xhi, dx = axis(x.shape[3])
    top, bottom = x[:, :, ylo, :], x[:, :, yhi, :]
    dx = dx.view(1, 1, 1, size)
    upper = top[..., xlo] + (top[..., xhi] - top[..., xlo]) * dx
    lower = bottom[..., xlo] + (bottom[..., xhi] - bottom[..., xlo]) * dx
    return upper + (lower - upper) * dy.view(1, 1, size, 1)


def _pil_bicubic(x: Tensor, size: int) -> Tensor:
    """clean-fid's ``make_resizer("PIL", False, "bicubic", (299, 299))``, channel by channel."""
    from PIL import Image

    out = np.empty((x.shape[0], x.shape[1], size, size), dtype=np.float32)
    for i, image in enumerate(x.cpu().numpy().astype(np.float32)):
        for c, channel in enumerate(image):
            resized = Image.fromarray(channel, mode="F").resize((size, size), Image.BICUBIC)
            out[i, c] = np.asarray(resized).clip(0, 255)
    return torch.from_numpy(out).to(x.device)


def network_input(images: Tensor, convention: str = "tf") -> Tensor:
    """uint8 images [N, C, H, W] (C = 1 or 3) -> float32 [N, 3, 299, 299] in [-1, 1]."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown Inception input convention {convention!r}")
    if images.dtype != torch.uint8:
        raise ValueError(f"the Inception input is made from uint8 pixels, not {images.dtype}")
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # grey images as RGB (every tool converts to RGB first)
    resize = x.shape[2:] != (RESOLUTION, RESOLUTION)
    if convention == "pytorch_fid":
        x = x / 255
        if resize:
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bilinear",
                              align_corners=False)
        return 2 * x - 1
    if resize:
        x = _tf1_bilinear(x, RESOLUTION) if convention == "tf" else _pil_bicubic(x, RESOLUTION)
    return (x - 128) / 128
