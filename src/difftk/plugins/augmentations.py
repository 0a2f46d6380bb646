"""Built-in augmentation pipelines ([augment]): none, and EDM's geometric pipeline.

``edm`` is the geometric part of EDM's ``AugmentPipe`` (Karras et al. 2022, App. F.2, after
ADA, Karras et al. 2020): x- and y-flips, quarter turns, integer translation, isotropic
scaling, fractional rotation, anisotropic scaling and fractional translation. Each is
applied to an image with probability ``p`` times its multiplier (capped at 1) and adds its
parameters to the image's augmentation labels, which the network receives as a conditioning
input (zeros when sampling). The defaults are EDM's CIFAR-10 setting (``--augment=0.12``:
xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1), whose labels have
9 entries. EDM's colour transforms are left out (its recipes do not use them).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from difftk.data.augment import Augmentation
from difftk.data.image_transforms import (
    flip_where,
    quarter_turns,
    resample_affine,
    rotation,
    scaling,
    shift_pixels,
    translation,
)
from difftk.errors import DataError
from difftk.hookspecs import hookimpl


class NoAugmentation(Augmentation):
    """No augmentation: the images as the data set gives them, no labels (the default)."""

    name = "none"

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        return torch.empty((n, 0), device=device)

    def apply(self, images: Tensor, draws: Tensor) -> tuple[Tensor, Tensor | None]:
        return images, None


# The columns of one image's draws: uniforms in [0, 1), then standard normals.
(XFLIP_GATE, XFLIP, YFLIP_GATE, YFLIP, TURN_GATE, TURN, SHIFT_GATE, SHIFT_X, SHIFT_Y,
 SCALE_GATE, ROTATE_GATE, ROTATE, ANISO_GATE, ANISO_ANGLE, ANISO_ANGLE_GATE,
 TRANSLATE_GATE) = range(16)
UNIFORMS = 16
SCALE_N, ANISO_N, TRANSLATE_NX, TRANSLATE_NY = range(UNIFORMS, UNIFORMS + 4)
NORMALS = 4

MULTIPLIER = "probability multiplier of {} (x p, capped at 1; 0: off, and no label entries)"


class EdmAugment(Augmentation):
    """EDM's geometric augmentation with labels for the network (Karras et al. 2022, App. F.2)."""

    name = "edm"
    p: float = Field(0.12, ge=0, le=1, description="probability of each augmentation, times "
                     "its multiplier (EDM's --augment; 0.12 for CIFAR-10, 0.15 for FFHQ/AFHQv2)")
    xflip: float = Field(1e8, ge=0, description=MULTIPLIER.format(
        "a left-right flip; 1e8: every image flips with probability 1/2 and is told so"))
    yflip: float = Field(1.0, ge=0, description=MULTIPLIER.format("an up-down flip"))
    rotate_int: float = Field(0.0, ge=0, description=MULTIPLIER.format(
        "a quarter turn (0-3, square images)"))
    translate_int: float = Field(0.0, ge=0, description=MULTIPLIER.format(
        "an integer translation (mirrored borders)"))
    translate_int_max: float = Field(0.125, gt=0, le=1, description="largest integer "
                                     "translation, as a share of the image size")
    scale: float = Field(1.0, ge=0, description=MULTIPLIER.format("isotropic scaling"))
    rotate_frac: float = Field(1.0, ge=0, description=MULTIPLIER.format("an arbitrary rotation"))
    aniso: float = Field(1.0, ge=0, description=MULTIPLIER.format("anisotropic scaling"))
    translate_frac: float = Field(1.0, ge=0, description=MULTIPLIER.format(
        "a fractional translation"))
    scale_std: float = Field(0.2, ge=0, le=4, description="standard deviation of log2 of the "
                             "isotropic scale")
    rotate_frac_max: float = Field(1.0, ge=0, le=1, description="largest rotation, as a share "
                                   "of half a turn (1: any angle)")
    aniso_std: float = Field(0.2, ge=0, le=4, description="standard deviation of log2 of the "
                             "anisotropic scale")
    aniso_rotate_prob: float = Field(0.5, ge=0, le=1, description="probability that the "
                                     "anisotropic scaling is along a random direction (else "
                                     "along the axes)")
    translate_frac_std: float = Field(0.125, ge=0, le=1, description="standard deviation of "
                                      "the fractional translation, as a share of the image size")

    def _geometric(self) -> bool:
        return any(m > 0 for m in (self.scale, self.rotate_frac, self.aniso, self.translate_frac))

    def label_dim(self) -> int:
        sizes = {"xflip": 1, "yflip": 1, "rotate_int": 2, "translate_int": 2, "scale": 1,
                 "rotate_frac": 2, "aniso": 2, "translate_frac": 2}
        return sum(size for name, size in sizes.items() if getattr(self, name) > 0)

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
        uniform = torch.rand((n, UNIFORMS), generator=generator, device=device)
        normal = torch.randn((n, NORMALS), generator=generator, device=device)
        return torch.cat([uniform, normal], dim=1)

    def apply(self, images: Tensor, draws: Tensor) -> tuple[Tensor, Tensor | None]:
        n, _, h, w = images.shape
        d = draws.float()
        labels: list[Tensor] = []

        def gate(column: int, multiplier: float) -> Tensor:
            """Which images this augmentation touches: u < multiplier * p (never when p = 0)."""
            return d[:, column] < multiplier * self.p

        # Pixel blits: exact, no resampling.
        if self.xflip > 0:
            flip = gate(XFLIP_GATE, self.xflip) & (d[:, XFLIP] < 0.5)
            images = flip_where(images, flip, 3)
            labels.append(flip.float())
        if self.yflip > 0:
            flip = gate(YFLIP_GATE, self.yflip) & (d[:, YFLIP] < 0.5)
            images = flip_where(images, flip, 2)
            labels.append(flip.float())
        if self.rotate_int > 0:
            if h != w:
                raise DataError(f"augment.rotate_int turns images by quarter turns, which needs "
                                f"square images (these are {h}x{w}); set it to 0")
            turns = (d[:, TURN] * 4).long().clamp(max=3) * gate(TURN_GATE, self.rotate_int)
            images = quarter_turns(images, turns)
            # EDM's labels of a quarter turn: its left-right and up-down flip components.
            labels += [((turns == 1) | (turns == 2)).float(), ((turns == 2) | (turns == 3)).float()]
        if self.translate_int > 0:
            on = gate(SHIFT_GATE, self.translate_int)
            span_x, span_y = w * self.translate_int_max, h * self.translate_int_max
            tx = ((d[:, SHIFT_X] * 2 - 1) * span_x).round().long() * on
            ty = ((d[:, SHIFT_Y] * 2 - 1) * span_y).round().long() * on
            images = shift_pixels(images, tx, ty)
            labels += [tx / span_x, ty / span_y]

        # Geometric transforms: one output-to-input map per image, composed as EDM does.
        if self._geometric():
            g_inv = torch.eye(3, device=images.device).expand(n, 3, 3)
            if self.scale > 0:
                v = d[:, SCALE_N] * gate(SCALE_GATE, self.scale)
                s = torch.exp2(v * self.scale_std)
                g_inv = g_inv @ scaling(1 / s, 1 / s, d)
                labels.append(v)
            if self.rotate_frac > 0:
                angle = (d[:, ROTATE] * 2 - 1) * (math.pi * self.rotate_frac_max)
                angle = angle * gate(ROTATE_GATE, self.rotate_frac)
                g_inv = g_inv @ rotation(angle)
                labels += [angle.cos() - 1, angle.sin()]
            if self.aniso > 0:
                on = gate(ANISO_GATE, self.aniso)
                v = d[:, ANISO_N] * on
                direction = (d[:, ANISO_ANGLE] * 2 - 1) * math.pi
                # No direction for an unscaled image (its map stays exactly the identity).
                direction = direction * (d[:, ANISO_ANGLE_GATE] < self.aniso_rotate_prob) * on
                s = torch.exp2(v * self.aniso_std)
                g_inv = g_inv @ rotation(-direction) @ scaling(1 / s, s, d) @ rotation(direction)
                labels += [v * direction.cos(), v * direction.sin()]
            if self.translate_frac > 0:
                on = gate(TRANSLATE_GATE, self.translate_frac)
                vx, vy = d[:, TRANSLATE_NX] * on, d[:, TRANSLATE_NY] * on
                std = self.translate_frac_std
                g_inv = g_inv @ translation(-vx * (w * std), -vy * (h * std), d)
                labels += [vx, vy]
            # Images no transform touched keep their pixels exactly.
            moved = (g_inv - torch.eye(3, device=images.device)).abs().amax(dim=(1, 2)) > 0
            images = torch.where(moved.view(-1, 1, 1, 1), resample_affine(images, g_inv), images)

        return images, torch.stack(labels, dim=1) if labels else None


@hookimpl
def register_augmentations(register):
    register(NoAugmentation)
    register(EdmAugment)
