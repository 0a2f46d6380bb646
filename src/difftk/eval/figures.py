"""Sample figures: image grids for images, scatter plots for 2-D vectors (as uint8 RGB)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from difftk.diffusion.pixel_range import UNIT_RANGE, PixelRange


def image_grid(x: torch.Tensor, nrow: int | None = None, min_size: int = 32,
               pixel_range: PixelRange = UNIT_RANGE) -> np.ndarray:
    """Tile [N, C, H, W] images (black and white at the data's ``pixel_range``, [-1, 1] by
    default) into one HxWx3 uint8 array, upscaled so a tile is at least ``min_size`` pixels
    (8x8 digits are unreadable otherwise)."""
    x = pixel_range.to_unit(x.detach().float().cpu()).clamp(0, 1).mul(255).round()
    x = x.to(torch.uint8)
    n, c, h, w = x.shape
    if c == 1:
        x = x.expand(n, 3, h, w)
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    pad = 1
    grid = torch.full((3, ncol * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h,
             pad + col * (w + pad): pad + col * (w + pad) + w] = x[i, :3]
    scale = max(1, math.ceil(min_size / h))
    if scale > 1:
        grid = grid.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return grid.permute(1, 2, 0).numpy()


def scatter_image(x: torch.Tensor, reference: torch.Tensor | None = None) -> np.ndarray:
    """A scatter plot of 2-D points (and a faint reference sample) as HxWx3 uint8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    if reference is not None:
        r = reference.detach().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="0.8", label="data")
    p = x.detach().float().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=2, c="C0", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return figure_to_image(fig)


def figure_to_image(fig) -> np.ndarray:
    """A matplotlib figure as an HxWx3 uint8 array (for PNG files and TensorBoard); closes it."""
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def sample_figure(x: torch.Tensor, reference: torch.Tensor | None = None,
                  pixel_range: PixelRange = UNIT_RANGE) -> np.ndarray:
    if x.dim() == 4:
        return image_grid(x, pixel_range=pixel_range)
    if x.dim() == 2 and x.shape[1] >= 2:
        return scatter_image(x[:, :2], None if reference is None else reference[:, :2])
    raise ValueError(f"cannot draw samples of shape {tuple(x.shape)}")


def save_png(image: np.ndarray, path: str | Path) -> None:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
