"""Soft-min-SNR weighting (Crowson et al. 2024, Hourglass Diffusion Transformers §5)."""

from typing import Literal

import torch
from pydantic import Field

import difftk
from difftk import hookimpl


class SoftMinSNR(difftk.Weighting):
    """Soft-min-SNR: w = 1 / (1/SNR + 1/gamma) on the x0-MSE (Crowson et al. 2024)."""

    name = "soft_min_snr"
    gamma: float = Field(4.0, gt=0, description="level the weight saturates at (sigma_data^-2)")
    relative_to: Literal["target", "x0"] = Field(
        "x0", description='the MSE the formula weights: the trained target\'s or x0\'s')

    def __call__(self, snr: torch.Tensor) -> torch.Tensor:
        # Written as SNR gamma / (SNR + gamma): finite at SNR = 0 and SNR = inf.
        return snr * self.gamma / (snr + self.gamma)


@hookimpl
def register_weights(register):
    register(SoftMinSNR)
