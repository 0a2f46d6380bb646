"""The seed's ScoreNet (seed 004, Coding I.1-2 and Coding II; after Song et al.'s tutorial).

A four-level convolutional U-Net without residual blocks. The noise level goes through
fixed Gaussian Fourier features [sin 2 pi W t, cos 2 pi W t] and a learned affine map with a
swish; in every block the embedding, projected by its own Dense layer, is added as a
per-channel bias *before* the GroupNorm:

    h_i = swish(GroupNorm_i(Conv_i(h_{i-1}) + Dense_i(embed)))

The decoder mirrors the encoder with transposed convolutions on [u_{j+1}, h_{j+1}] and a
final transposed convolution on [u_1, h_1]. We follow the padded layout of Coding II
(3x3 kernels, padding 1), which fits any image size; the unpadded Coding I.1 layout has the
same parameters but only fits 28x28. ``mean_scaling`` adds Coding I.2's learned output map
mu = rho0 (x - rho1 delta), rho0 = rho1 = 1 at initialisation.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from difftk.hookspecs import hookimpl
from difftk.nn.architecture import Architecture, ArchitectureError, DataSpec
from difftk.nn.auto_speed import Auto, chosen
from difftk.nn.checkpointing import run_block
from difftk.nn.conditioning import LabelEmbedding
from difftk.nn.embedding import FourierEmbedding
from difftk.nn.fp32 import GroupNorm32, fp32_region


class ScoreBlock(nn.Module):
    """swish(GroupNorm(conv(h) + Dense(embed))): the embedding enters before the norm."""

    def __init__(self, conv: nn.Module, cout: int, embed_dim: int, groups: int):
        super().__init__()
        self.conv = conv
        self.dense = nn.Linear(embed_dim, cout)
        self.norm = GroupNorm32(groups, cout)

    def forward(self, h: Tensor, embed: Tensor) -> Tensor:
        return F.silu(self.norm(self.conv(h) + self.dense(embed)[:, :, None, None]))


def _sizes(size: int) -> list[int]:
    """Spatial size at each of the four levels: stride-2 3x3 convs with padding 1 give ceil(s/2)."""
    out = [size]
    for _ in range(3):
        out.append(math.ceil(out[-1] / 2))
    return out


class ScoreNetModel(nn.Module):
    def __init__(self, spec: DataSpec, cfg: ScoreNet):
        super().__init__()
        c, e, g = cfg.channels, cfg.embed_dim, cfg.group_num
        cin, height, width = spec.shape
        self.checkpoint, self.channels_last = cfg.checkpoint, cfg.channels_last
        self.features = FourierEmbedding(e, cfg.fourier_scale)
        self.embed = nn.Linear(e, e)
        self.label_embed = LabelEmbedding(spec.num_classes, e) if spec.num_classes else None
        ins = [cin, c[0], c[1], c[2]]
        strides = [1, 2, 2, 2]
        self.enc = nn.ModuleList(
            ScoreBlock(nn.Conv2d(ins[i], c[i], 3, stride=strides[i], padding=1, bias=False), c[i], e, g)
            for i in range(4))
        hs, ws = _sizes(height), _sizes(width)
        # A stride-2 transposed conv (k 3, p 1) maps s to 2s - 1 + output_padding; choose the
        # padding that lands on the encoder's size at that level (0 for odd sizes, 1 for even).
        self.dec = nn.ModuleList()
        for level, cout in ((3, c[2]), (2, c[1]), (1, c[0])):
            cin_dec = c[level] * (1 if level == 3 else 2)
            pad = (hs[level - 1] - (2 * hs[level] - 1), ws[level - 1] - (2 * ws[level] - 1))
            conv = nn.ConvTranspose2d(cin_dec, cout, 3, stride=2, padding=1, output_padding=pad,
                                      bias=False)
            self.dec.append(ScoreBlock(conv, cout, e, g))
        self.out = nn.ConvTranspose2d(2 * c[0], spec.out_channels, 3, stride=1, padding=1)
        self.mean_scaling = cfg.mean_scaling
        if cfg.mean_scaling:
            self.rho0 = nn.Parameter(torch.tensor(1.0))
            self.rho1 = nn.Parameter(torch.tensor(1.0))
            self.rho_lr_multiplier = cfg.rho_lr_multiplier

    def lr_groups(self) -> dict[str, tuple[float, list[nn.Parameter]]]:
        """rho0, rho1 at their own learning rate (seed 004 trains them at 0.2 beside 0.01);
        read by difftk.optim.param_groups."""
        if not self.mean_scaling:
            return {}
        return {"mean_scaling": (self.rho_lr_multiplier, [self.rho0, self.rho1])}

    def forward(self, x: Tensor, time: Tensor, labels: Tensor | None = None) -> Tensor:
        with fp32_region(time):  # the noise embedding in fp32 (seed 001 §12.2)
            embed = F.silu(self.embed(self.features(time)))
        if self.label_embed is not None:
            embed = embed + self.label_embed(labels, x.shape[0], x.device)
        if chosen(self.channels_last, "channels_last", x.device):
            x = x.contiguous(memory_format=torch.channels_last)
        skips, h = [], x
        for block in self.enc:
            h = run_block(block, h, embed, enabled=self.checkpoint)
            skips.append(h)
        u = skips.pop()
        for i, block in enumerate(self.dec):
            u = run_block(block, u if i == 0 else torch.cat([u, skips.pop()], dim=1), embed,
                          enabled=self.checkpoint)
        with fp32_region(u):  # the output head in fp32 (seed 001 §12.4)
            delta = self.out(torch.cat([u, skips.pop()], dim=1).float())
            if not self.mean_scaling:
                return delta
            # Coding I.2: mu = rho0 (x - rho1 delta) on the data channels; extra (variance)
            # channels pass through.
            mu = self.rho0 * (x.float() - self.rho1 * delta[:, : x.shape[1]])
            return torch.cat([mu, delta[:, x.shape[1]:]], dim=1)


class ScoreNet(Architecture):
    """The seed's four-level conv U-Net: Fourier time features added before every GroupNorm."""

    name = "scorenet"
    PRESETS = {  # seed 004, Coding I.7
        "small": dict(channels=[8, 16, 32, 64]),
        "medium": dict(channels=[32, 64, 128, 256]),
        "large": dict(channels=[64, 128, 256, 512]),
    }

    preset: Literal["none", "small", "medium", "large"] = Field(
        "none", description="the seed's widths; fields set beside it override it")
    channels: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        [32, 64, 128, 256], min_length=4, max_length=4, description="channels of the four levels")
    embed_dim: int = Field(256, ge=2, le=65_536,
                           description="size of the Fourier time features and embedding")
    group_num: int = Field(4, ge=1, description="GroupNorm groups")
    fourier_scale: float = Field(30.0, gt=0, description="std of the Fourier frequencies W")
    mean_scaling: bool = Field(
        False, description="output rho0 (x - rho1 delta) with learned rho0, rho1 (Coding I.2)")
    rho_lr_multiplier: float = Field(
        1.0, gt=0, description="learning rate of rho0, rho1 relative to optimizer.lr (seed "
                               "004 uses 20: 0.2 beside 0.01)")
    checkpoint: bool = Field(False, description="gradient checkpointing per block (less memory)")
    channels_last: bool | Auto = Field(
        False, description="NHWC memory format for the convolutions; auto: on the devices "
        "where it measured faster (nn/auto_speed.py; the input is converted, the weights follow)")

    @field_validator("embed_dim")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError("must be even (sin and cos halves)")
        return v

    def build(self, spec: DataSpec) -> nn.Module:
        if len(spec.shape) != 3:
            raise ArchitectureError(f"scorenet takes images (C, H, W), not shape {spec.shape}")
        bad = [ch for ch in self.channels if ch % self.group_num]
        if bad:
            raise ArchitectureError(f"scorenet channels {bad} do not split into "
                                    f"{self.group_num} GroupNorm groups")
        net = ScoreNetModel(spec, self)
        return net.to(memory_format=torch.channels_last) if self.channels_last is True else net


@hookimpl
def register_architectures(register):
    register(ScoreNet)
