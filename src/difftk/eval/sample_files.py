"""Samples as files other tools read: an .npz of arrays, or a folder of PNGs.

Samples come out in the data set's scaled space. Image data sets map pixels u in [0, 1]
to x = (u - mean) / std per channel (data/images.py; mean = std = 0.5 gives [-1, 1]), so
u = x std + mean undoes it: a PNG pixel is round(255 clamp(u, 0, 1)), the 0-255 images
torch-fidelity and clean-fid read from a folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from difftk.data.pixel_scaling import pixel_scaling
from difftk.errors import DifftkError


def value_range(kind: str, data_part, shape: tuple[int, ...]) -> np.ndarray:
    """The values black and white pixels take in the samples' space: [lo, hi] ([-1, 1] by
    default), or one row [lo, hi] per channel when the channels are scaled differently.
    Vector data has no pixel range: [-inf, inf]."""
    if kind != "image":
        return np.array([-np.inf, np.inf])
    mean, std = pixel_scaling(data_part, shape[0])
    rows = np.stack([(0 - mean) / std, (1 - mean) / std], axis=1)
    return rows[0] if np.allclose(rows, rows[0]) else rows


def write_npz(path: Path, samples: torch.Tensor, labels: torch.Tensor | None,
              value_range: np.ndarray) -> None:
    """``samples`` as drawn, ``value_range`` (see above) and ``labels`` when there are any."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"samples": samples.detach().float().cpu().numpy(), "value_range": value_range}
    if labels is not None:
        arrays["labels"] = labels.detach().cpu().numpy().astype(np.int64)
    np.savez(path, **arrays)


def to_uint8(images: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """[N, C, H, W] in the scaled space -> [N, H, W, C] uint8 pixels."""
    x = images.detach().double().cpu()
    u = x * torch.from_numpy(std).view(1, -1, 1, 1) + torch.from_numpy(mean).view(1, -1, 1, 1)
    return u.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def write_png_dir(directory: Path, images: torch.Tensor, labels: torch.Tensor | None,
                  data_part) -> list[Path]:
    """One PNG per sample, ``000000.png`` or ``000000_label3.png`` when labelled."""
    names = [f"{i:06d}.png" if labels is None else f"{i:06d}_label{int(labels[i])}.png"
             for i in range(images.shape[0])]
    return write_png_files(directory, images, names, data_part)


def write_png_files(directory: Path, images: torch.Tensor, names: list[str], data_part
                    ) -> list[Path]:
    """images[i] as the 0-255 PNG ``directory / names[i]``, each written under a temporary
    name and renamed, so a killed job never leaves a half-written file behind."""
    import os

    from PIL import Image

    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise DifftkError(f"--format png-dir writes images with 1 or 3 channels, and these "
                          f"samples have shape {tuple(images.shape[1:])}")
    mean, std = pixel_scaling(data_part, images.shape[1])
    pixels = to_uint8(images, mean, std)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, image in zip(names, pixels, strict=True):
        path = directory / name
        tmp = directory / f".{name}.{os.getpid()}.tmp"
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp, format="PNG")
        os.replace(tmp, path)
        paths.append(path)
    return paths
