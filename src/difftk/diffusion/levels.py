"""Noise levels in the one coordinate system of DESIGN.md: x_t = alpha x0 + sigma eps.

Everything else (SNR, logSNR, EDM's sigma = sigma / alpha) is derived from the pair.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, Field, model_validator
from torch import Tensor

# logSNR floor used where a formula needs a finite EDM sigma at zero terminal SNR
# (alpha = 0): exp(-LOG_SNR_MIN / 2) ~ 3e6 is far beyond any sampler's sigma_max.
LOG_SNR_MIN = -30.0


@dataclass(frozen=True)
class Levels:
    """A batch of noise levels: alpha, sigma (shape [B]) and the schedule's time t if known.

    ``weight`` is an optional per-sample importance weight set by a noise sampler.
    """

    alpha: Tensor
    sigma: Tensor
    t: Tensor | None = None
    weight: Tensor | None = None

    @property
    def snr(self) -> Tensor:
        return self.alpha**2 / self.sigma**2

    @property
    def log_snr(self) -> Tensor:
        return 2 * (torch.log(self.alpha) - torch.log(self.sigma))

    @property
    def sigma_edm(self) -> Tensor:
        """EDM's noise level sigma / alpha (seed 001 §8.1.1), finite at alpha = 0."""
        log_snr = self.log_snr.clamp(min=LOG_SNR_MIN)
        return torch.exp(-0.5 * log_snr)

    def to(self, device=None, dtype=None) -> Levels:
        def move(x):
            if x is None:
                return None
            return x.to(device=device, dtype=dtype if x.is_floating_point() else None)
        return replace(self, alpha=move(self.alpha), sigma=move(self.sigma), t=move(self.t),
                       weight=move(self.weight))

    def __len__(self) -> int:
        return self.alpha.shape[0]


def broadcast(v: Tensor, like: Tensor) -> Tensor:
    """Shape a per-sample [B] tensor to broadcast against a batch like [B, ...]."""
    return v.reshape(v.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


# The data's standard deviation as a parameter: a positive number, or "data" to measure
# it on the training set when the run starts (EDM's sigma_data, seed 001 §8.1.2).
SigmaData = Annotated[float, Field(gt=0)] | Literal["data"]
SIGMA_DATA_HELP = 'std of the data; "data" measures it on the training set'


class SigmaRange(BaseModel):
    """Mixin of the parts that live on an interval [sigma_min, sigma_max] of EDM's sigma
    (sigma-space schedules, sigma distributions): the two parameters, refused unless ordered."""

    sigma_min: float = Field(0.002, gt=0, description="smallest EDM sigma")
    sigma_max: float = Field(80.0, gt=0, description="largest EDM sigma")

    @model_validator(mode="after")
    def _ordered(self):
        if self.sigma_min >= self.sigma_max:
            raise ValueError("sigma_min must be smaller than sigma_max")
        return self
