"""Per-item geometric transforms of an image batch [N, C, H, W]: pixel blits (flips, quarter
turns, integer translation) and a band-limited affine resampling.

The resampling is the one of Karras et al. 2020 (ADA, App. B.1), which EDM's augmentation
reuses (Karras et al. 2022, App. F.2): mirror-pad, upsample 2x with a symlet-6 low-pass
filter, resample bilinearly, filter and downsample 2x, so rotations and fractional shifts do
not alias. Coordinates are pixels relative to the image centre (x right, y down); an affine
map ``g_inv`` [N, 3, 3] sends each output pixel to the input point it reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# The symlet-6 low-pass filter (Daubechies, Ten Lectures on Wavelets, 1992): orthogonal, so
# upsampling and downsampling with it reproduce an untransformed image.
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036,
        -0.007800708325034148)


# ---------------------------------------------------------------- pixel blits
def flip_where(images: Tensor, flip: Tensor, dim: int) -> Tensor:
    """Images with ``flip`` [N] true mirrored along ``dim`` (3: left-right, 2: up-down)."""
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(dim), images)


def quarter_turns(images: Tensor, k: Tensor) -> Tensor:
    """Each square image turned as ``torch.rot90(image, k[i], dims=(-2, -1))`` (k in 0..3):
    one turn is a left-right flip then a transpose, two are both flips."""
    flip_lr = (k == 1) | (k == 2)
    flip_ud = (k == 2) | (k == 3)
    images = flip_where(images, flip_lr, 3)
    images = flip_where(images, flip_ud, 2)
    return torch.where(((k == 1) | (k == 3)).view(-1, 1, 1, 1), images.transpose(2, 3), images)


def mirror_index(index: Tensor, size: int) -> Tensor:
    """Positions on a line of ``size`` pixels reflected at its ends without repeating the
    edge pixel (-1 -> 1, size -> size - 2), as ``F.pad(mode="reflect")`` extends an image."""
    if size == 1:
        return torch.zeros_like(index)
    folded = index % (2 * size - 2)  # the reflection is periodic
    return (size - 1) - ((size - 1) - folded).abs()


def shift_pixels(images: Tensor, tx: Tensor, ty: Tensor) -> Tensor:
    """Image i moved by (tx[i], ty[i]) whole pixels (right, down), mirrored at the borders:
    out[y, x] = in[y - ty, x - tx]."""
    n, c, h, w = images.shape
    cols = mirror_index(torch.arange(w, device=images.device) - tx.view(-1, 1), w)  # [N, W]
    rows = mirror_index(torch.arange(h, device=images.device) - ty.view(-1, 1), h)  # [N, H]
    images = images.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w))
    return images.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))


# ---------------------------------------------------------------- affine maps
def affine(a, b, c, d, e, f, like: Tensor) -> Tensor:
    """[[a, b, c], [d, e, f], [0, 0, 1]] per item, from [N] tensors or numbers."""
    n = like.shape[0]

    def column(v):
        return torch.as_tensor(v, dtype=torch.float32, device=like.device).expand(n)

    zero, one = column(0.0), column(1.0)
    rows = [column(v) for v in (a, b, c, d, e, f)] + [zero, zero, one]
    return torch.stack(rows, dim=1).view(n, 3, 3)


def translation(tx, ty, like: Tensor) -> Tensor:
    return affine(1.0, 0.0, tx, 0.0, 1.0, ty, like)


def scaling(sx, sy, like: Tensor) -> Tensor:
    return affine(sx, 0.0, 0.0, 0.0, sy, 0.0, like)


def rotation(theta: Tensor) -> Tensor:
    """Counter-clockwise on screen for an output-to-input map (theta = pi / 2 is rot90)."""
    cos, sin = theta.cos(), theta.sin()
    return affine(cos, -sin, 0.0, sin, cos, 0.0, theta)


# ---------------------------------------------------------------- band-limited resampling
def _filter(images: Tensor, taps: Tensor, dim: int, stride: int, padding: int) -> Tensor:
    """Each channel convolved (as cross-correlation) with ``taps`` along ``dim`` (2 or 3)."""
    channels = images.shape[1]
    shape = (channels, 1, len(taps), 1) if dim == 2 else (channels, 1, 1, len(taps))
    pad = (padding, 0) if dim == 2 else (0, padding)
    step = (stride, 1) if dim == 2 else (1, stride)
    return F.conv2d(images, taps.view(1, 1, -1).expand(shape[0], 1, -1).reshape(shape),
                    stride=step, padding=pad, groups=channels)


def _upsample(images: Tensor, taps: Tensor, dim: int) -> Tensor:
    """2x along ``dim``: zeros between the pixels, then the low-pass filter."""
    interleaved = torch.stack([images, torch.zeros_like(images)], dim=dim + 1)
    interleaved = interleaved.flatten(dim, dim + 1).narrow(dim, 0, 2 * images.shape[dim] - 1)
    return _filter(interleaved, taps.flip(0), dim, 1, (len(taps) + 1) // 2)


def resample_affine(images: Tensor, g_inv: Tensor) -> Tensor:
    """Output pixel p of image i is input point g_inv[i] @ p (centred pixel coordinates),
    read from the image mirror-padded and upsampled 2x with SYM6 (ADA App. B.1).

    The padding is the most mirror padding allows (size - 1 each side), the bound EDM's own
    per-batch margin is clamped to: each image's result then depends on its own map only
    (not on the batch it is in), and the step needs no host synchronisation.
    """
    n, c, h, w = images.shape
    taps = torch.tensor(SYM6, dtype=torch.float32, device=images.device)
    edge = len(SYM6) // 4  # filter margin kept around the output, in input pixels
    dtype = images.dtype
    x = F.pad(images.float(), [w - 1, w - 1, h - 1, h - 1], mode="reflect")
    x = _upsample(_upsample(x, taps, 3), taps, 2)
    # g_inv in the upsampled image's pixels (centres of the 2x grid sit half a pixel off).
    g = scaling(2.0, 2.0, g_inv) @ g_inv @ scaling(0.5, 0.5, g_inv)
    g = translation(-0.5, -0.5, g_inv) @ g @ translation(0.5, 0.5, g_inv)
    out_h, out_w = 2 * (h + 2 * edge), 2 * (w + 2 * edge)
    # affine_grid's normalised coordinates: 2 / size per pixel (align_corners=False).
    g = scaling(2 / x.shape[3], 2 / x.shape[2], g_inv) @ g @ scaling(out_w / 2, out_h / 2, g_inv)
    grid = F.affine_grid(g[:, :2, :], [n, c, out_h, out_w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    down = (len(SYM6) - 1) // 2
    x = _filter(x, taps, 3, 2, down)[:, :, :, edge:-edge]
    x = _filter(x, taps, 2, 2, down)[:, :, edge:-edge, :]
    return x.to(dtype)
