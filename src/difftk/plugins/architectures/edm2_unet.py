"""EDM2's magnitude-preserving U-Net (Karras et al. 2024b, "Analyzing and Improving the
Training Dynamics of Diffusion Models", §3 and Appendix B; config G of Table 1).

Every layer is magnitude preserving (difftk.nn.magnitude_preserving): convolutions with
forced weight normalisation and no biases, no group norms (pixel norm of the encoder's
activations instead, §3.2), MP SiLU, residual and skip branches joined by MP sum (balance 0.3)
and MP concatenation (0.5), attention with cosine (pixel-normalised) queries and keys, the
noise level embedded by MP Fourier features of EDM's c_noise = ln(sigma) / 4, the class by an
MP linear map of the one-hot label, and learned scalar gains (zero at initialisation) on the
embedding's modulation and the output. The input gets a constant channel of ones.

Blocks: ``enc`` (1x1 skip projection, then pixel norm, before the residual branch) and
``dec`` (projection after it), with 2x2 box-filter resampling (``resample``). The network
expects EDM's preconditioning (target ``edm``), whose c_noise it embeds. Presets: EDM2's
ImageNet configurations (``edm2-img512-*`` on 64x64x4 latents, ``edm2-img64-*`` on
pixels), whose parameter counts (Table 2: XS 125M, S 280M, M 498M, L 777M, XL 1.1B, XXL
1.5B) the tests check.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from difftk.hookspecs import hookimpl
from difftk.nn.architecture import Architecture, ArchitectureError, DataSpec
from difftk.nn.magnitude_preserving import MPConv, MPFourier, mp_cat, mp_silu, mp_sum, normalize


def resample(x: Tensor, mode: str = "keep", f=(1, 1)) -> Tensor:
    """EDM2's ``resample``: a separable box filter, stride 2 down, transposed (x4) up."""
    if mode == "keep":
        return x
    taps = np.float32(f)
    pad = (len(taps) - 1) // 2
    taps = taps / taps.sum()
    kernel = torch.as_tensor(np.outer(taps, taps)[None, None], dtype=x.dtype, device=x.device)
    c = x.shape[1]
    if mode == "down":
        return nn.functional.conv2d(x, kernel.tile([c, 1, 1, 1]), groups=c, stride=2,
                                    padding=(pad,))
    return nn.functional.conv_transpose2d(x, (kernel * 4).tile([c, 1, 1, 1]), groups=c,
                                          stride=2, padding=(pad,))


class Block(nn.Module):
    """EDM2's ``Block``: resample, (enc: skip projection and pixel norm), residual branch
    conv(silu(x)) modulated by (1 + gain * linear(emb)), conv, MP sum, optional attention."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, flavor: str,
                 resample_mode: str = "keep", attention: bool = False,
                 channels_per_head: int = 64, dropout: float = 0.0, res_balance: float = 0.3,
                 attn_balance: float = 0.3, clip_act: float = 256.0):
        super().__init__()
        self.out_channels, self.flavor, self.resample_mode = out_channels, flavor, resample_mode
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.dropout, self.res_balance, self.attn_balance = dropout, res_balance, attn_balance
        self.clip_act = clip_act
        self.emb_gain = nn.Parameter(torch.zeros([]))
        self.conv_res0 = MPConv(out_channels if flavor == "enc" else in_channels, out_channels,
                                kernel=(3, 3))
        self.emb_linear = MPConv(emb_channels, out_channels, kernel=())
        self.conv_res1 = MPConv(out_channels, out_channels, kernel=(3, 3))
        self.conv_skip = (MPConv(in_channels, out_channels, kernel=(1, 1))
                          if in_channels != out_channels else None)
        self.attn_qkv = (MPConv(out_channels, out_channels * 3, kernel=(1, 1))
                         if self.num_heads else None)
        self.attn_proj = (MPConv(out_channels, out_channels, kernel=(1, 1))
                          if self.num_heads else None)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        x = resample(x, self.resample_mode)
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = normalize(x, dim=1)  # pixel norm (§3.2)
        y = self.conv_res0(mp_silu(x))
        c = self.emb_linear(emb, gain=self.emb_gain) + 1
        y = mp_silu(y * c[:, :, None, None].to(y.dtype))
        if self.training and self.dropout:
            y = nn.functional.dropout(y, p=self.dropout)
        y = self.conv_res1(y)
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)
        if self.num_heads:
            y = self.attn_qkv(x)
            y = y.reshape(y.shape[0], self.num_heads, -1, 3, y.shape[2] * y.shape[3])
            q, k, v = normalize(y, dim=2).unbind(3)  # cosine attention (pixel norm of q, k, v)
            w = torch.einsum("nhcq,nhck->nhqk", q, k / math.sqrt(q.shape[2])).softmax(dim=3)
            y = torch.einsum("nhqk,nhck->nhcq", w, v)
            x = mp_sum(x, self.attn_proj(y.reshape(*x.shape)), t=self.attn_balance)
        if self.clip_act:
            x = x.clip(-self.clip_act, self.clip_act)
        return x


class EDM2UNetModel(nn.Module):
    def __init__(self, spec: DataSpec, cfg: EDM2UNet):
        super().__init__()
        img_channels, resolution = spec.shape[0], spec.shape[1]
        cblock = [cfg.channels * m for m in cfg.channel_mult]
        cnoise, cemb = cblock[0], max(cblock)
        self.num_classes = spec.num_classes
        self.label_balance, self.concat_balance = cfg.label_balance, cfg.concat_balance
        self.out_gain = nn.Parameter(torch.zeros([]))
        self.emb_fourier = MPFourier(cnoise)
        self.emb_noise = MPConv(cnoise, cemb, kernel=())
        self.emb_label = MPConv(spec.num_classes, cemb, kernel=()) if spec.num_classes else None
        kw = dict(channels_per_head=cfg.channels_per_head, dropout=cfg.dropout,
                  res_balance=cfg.res_balance, attn_balance=cfg.attn_balance,
                  clip_act=cfg.clip_act)
        attn = set(cfg.attention_resolutions)
        self.enc = nn.ModuleDict()
        cout = img_channels + 1
        for level, channels in enumerate(cblock):
            res = resolution >> level
            if level == 0:
                cin, cout = cout, channels
                self.enc[f"{res}x{res}_conv"] = MPConv(cin, cout, kernel=(3, 3))
            else:
                self.enc[f"{res}x{res}_down"] = Block(cout, cout, cemb, "enc", "down", **kw)
            for idx in range(cfg.num_blocks):
                cin, cout = cout, channels
                self.enc[f"{res}x{res}_block{idx}"] = Block(cin, cout, cemb, "enc",
                                                            attention=res in attn, **kw)
        self.dec = nn.ModuleDict()
        skips = [block.out_channels for block in self.enc.values()]
        for level, channels in reversed(list(enumerate(cblock))):
            res = resolution >> level
            if level == len(cblock) - 1:
                self.dec[f"{res}x{res}_in0"] = Block(cout, cout, cemb, "dec", attention=True, **kw)
                self.dec[f"{res}x{res}_in1"] = Block(cout, cout, cemb, "dec", **kw)
            else:
                self.dec[f"{res}x{res}_up"] = Block(cout, cout, cemb, "dec", "up", **kw)
            for idx in range(cfg.num_blocks + 1):
                cin, cout = cout + skips.pop(), channels
                self.dec[f"{res}x{res}_block{idx}"] = Block(cin, cout, cemb, "dec",
                                                            attention=res in attn, **kw)
        self.out_conv = MPConv(cout, spec.out_channels, kernel=(3, 3))

    def one_hot(self, labels: Tensor | None, batch: int, device) -> Tensor:
        """EDM2's class input: one-hot rows; the null label (index num_classes) and no labels
        are the zero vector, EDM2's unconditional input."""
        if labels is None:
            return torch.zeros(batch, self.num_classes, device=device)
        hot = nn.functional.one_hot(labels.long().clamp(0, self.num_classes), self.num_classes + 1)
        return hot[:, :self.num_classes].float()

    def forward(self, x: Tensor, time: Tensor, labels: Tensor | None = None) -> Tensor:
        emb = self.emb_noise(self.emb_fourier(time))
        if self.emb_label is not None:
            onehot = self.one_hot(labels, x.shape[0], x.device)
            emb = mp_sum(emb, self.emb_label(onehot * math.sqrt(onehot.shape[1])),
                         t=self.label_balance)
        emb = mp_silu(emb)
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        skips = []
        for name, block in self.enc.items():
            x = block(x) if "conv" in name else block(x, emb)
            skips.append(x)
        for name, block in self.dec.items():
            if "block" in name:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = block(x, emb)
        return self.out_conv(x, gain=self.out_gain)


# EDM2's train_edm2.py config presets: model channels and dropout (the rest are UNet defaults).
_IMG512 = {"xs": (128, 0.0), "s": (192, 0.0), "m": (256, 0.1), "l": (320, 0.1),
           "xl": (384, 0.1), "xxl": (448, 0.1)}
_IMG64 = {"s": (192, 0.0), "m": (256, 0.1), "l": (320, 0.1), "xl": (384, 0.1)}


class EDM2UNet(Architecture):
    """EDM2's magnitude-preserving U-Net (Karras et al. 2024b, config G)."""

    name = "edm2_unet"
    PRESETS = {**{f"edm2-img512-{k}": dict(channels=c, dropout=d) for k, (c, d) in _IMG512.items()},
               **{f"edm2-img64-{k}": dict(channels=c, dropout=d) for k, (c, d) in _IMG64.items()}}

    preset: str = Field("none", description="an EDM2 ImageNet configuration: edm2-img512-xs|s|m|"
                        "l|xl|xxl (64x64x4 latents), edm2-img64-s|m|l|xl (pixels)")
    channels: int = Field(128, ge=1, le=8192, description="model channels (width of level 0)")
    channel_mult: list[int] = Field([1, 2, 3, 4], min_length=1, max_length=8,
                                    description="width multiplier per resolution level")
    num_blocks: int = Field(3, ge=1, le=64, description="encoder blocks per level (the decoder "
                            "has one more)")
    attention_resolutions: list[int] = Field([16, 8], description="resolutions with "
                                             "self-attention")
    channels_per_head: int = Field(64, ge=1, description="attention head width")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout in the residual branch")
    res_balance: float = Field(0.3, ge=0, le=1, description="MP sum weight of the residual branch")
    attn_balance: float = Field(0.3, ge=0, le=1, description="MP sum weight of attention")
    label_balance: float = Field(0.5, ge=0, le=1, description="MP sum weight of the label "
                                 "embedding")
    concat_balance: float = Field(0.5, ge=0, le=1, description="MP concatenation weight of the "
                                  "skip")
    clip_act: float = Field(256.0, ge=0, description="clip activations to +-this (0: no clip)")

    @model_validator(mode="after")
    def _known_preset(self):
        if self.preset != "none" and self.preset not in self.PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose none or one of "
                             f"{', '.join(self.PRESETS)}")
        return self

    def build(self, spec: DataSpec) -> nn.Module:
        if len(spec.shape) != 3:
            raise ArchitectureError(f"edm2_unet takes images (C, H, W), not shape {spec.shape}")
        _, height, width = spec.shape
        step = 2 ** (len(self.channel_mult) - 1)
        if height != width or height % step:
            raise ArchitectureError(f"edm2_unet needs square images whose side divides by "
                                    f"{step} ({len(self.channel_mult)} levels); got "
                                    f"{height}x{width}")
        return EDM2UNetModel(spec, self)


@hookimpl
def register_architectures(register):
    register(EDM2UNet)
