"""Built-in loss weightings w(SNR) (seed 001 §7 and §8.3)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from difftk.diffusion.levels import SIGMA_DATA_HELP, SigmaData
from difftk.diffusion.weighting import Weighting
from difftk.hookspecs import hookimpl


class Uniform(Weighting):
    """w = 1: the unweighted MSE of the trained target (Ho et al. 2020's L_simple)."""

    name = "uniform"

    def __call__(self, snr):
        return torch.ones_like(snr)


class MinSNR(Weighting):
    """Min-SNR-gamma: w = min(SNR, gamma) on the x0-MSE (Hang et al. 2023; seed 001 §7.3).

    With the default relative_to = "x0" an eps-model gets min(SNR, gamma) / SNR and a
    v-model min(SNR, gamma) / (SNR + 1), as in the paper and diffusers' scripts.
    """

    name = "min_snr"
    gamma: float = Field(5.0, gt=0, description="cap on the weight")
    relative_to: Literal["target", "x0"] = Field(
        "x0", description='the MSE the formula weights: the trained target\'s or x0\'s')

    def __call__(self, snr):
        return torch.clamp(snr, max=self.gamma)


class EDMWeight(Weighting):
    """EDM's lambda = 1 / c_out^2 = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 on the
    x0-MSE (Karras et al. 2022; seed 001 §8.3), with sigma^2 = 1 / SNR."""

    name = "edm"
    sigma_data: SigmaData = Field("data", description=SIGMA_DATA_HELP)
    relative_to: Literal["target", "x0"] = Field(
        "x0", description='the MSE the formula weights: the trained target\'s or x0\'s')

    def __call__(self, snr):
        if self.sigma_data == "data":
            raise RuntimeError("sigma_data must be resolved before use")
        return snr + 1.0 / float(self.sigma_data) ** 2


@hookimpl
def register_weights(register):
    for cls in (Uniform, MinSNR, EDMWeight):
        register(cls)
