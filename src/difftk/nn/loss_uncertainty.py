"""EDM2's learned loss weighting: a small network u(sigma) of the noise level alone, whose
output is the log-variance of the loss at that level (Karras et al. 2024b, §5 and eq. 77,
after Kendall & Gal 2018): the trained loss is l / e^u + u, minimised at u = ln E[l | sigma],
so every noise level contributes about equally, whatever its loss's scale.

As in EDM2's ``Precond``: u = MPConv_1x128(MPFourier_128(c_noise)), c_noise = ln(sigma) / 4 in
EDM's sigma, trained with the denoiser (it is one of its modules: its optimizer, EMA and
checkpoint are the denoiser's), used only by the loss.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from difftk.diffusion.levels import Levels
from difftk.nn.magnitude_preserving import MPConv, MPFourier


class LossUncertainty(nn.Module):
    """u(sigma): the loss's log-variance at each level, shape [B] (fp32)."""

    def __init__(self, channels: int = 128):
        super().__init__()
        self.fourier = MPFourier(channels)
        self.linear = MPConv(channels, 1, kernel=())

    def forward(self, levels: Levels) -> Tensor:
        c_noise = 0.25 * torch.log(levels.sigma_edm.float())
        return self.linear(self.fourier(c_noise)).reshape(-1)
