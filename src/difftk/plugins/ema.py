"""Built-in EMA rules (seed 001 §11.1; Karras et al. 2024 for the power-function EMA)."""

from __future__ import annotations

import functools

from pydantic import Field, field_validator

from difftk.hookspecs import hookimpl
from difftk.optim.ema import Ema
from difftk.optim.power_ema import SIGMA_REL_MAX, power_beta, sigma_rel_to_gamma


class FixedEma(Ema):
    """ema <- beta ema + (1 - beta) weights with a fixed beta (seed 001 §11.1)."""

    name = "ema"
    beta: float = Field(0.999, ge=0, lt=1, description="decay per optimizer step")

    def decay(self, step, batch_size):
        return self.beta


class NoEma(Ema):
    """No averaging: the 'EMA' copy follows the raw weights."""

    name = "none"

    def decay(self, step, batch_size):
        return 0.0


class WarmupEma(Ema):
    """Decay that grows with the step: 1 - (1 + s / inv_gamma)^(-power), s = step - 1, clamped.

    k-diffusion's EMAWarmup and diffusers' EMAModel(use_ema_warmup=True): the first
    update copies the weights (decay 0); power 2/3 reaches 0.999 at 31.6k steps and
    0.9999 at 1M, power 3/4 reaches 0.999 at 10k and 0.9999 at 215k.
    """

    name = "ema_warmup"
    inv_gamma: float = Field(1.0, gt=0, description="step scale of the warm-up")
    power: float = Field(2 / 3, gt=0, description="how fast the decay approaches 1")
    min_decay: float = Field(0.0, ge=0, lt=1, description="floor of the decay")
    max_decay: float = Field(0.9999, ge=0, lt=1, description="ceiling of the decay")

    def decay(self, step, batch_size):
        s = max(step - 1, 0)
        value = 1.0 - (1.0 + s / self.inv_gamma) ** -self.power
        return min(max(value, self.min_decay), self.max_decay)


class PowerEma(Ema):
    """EDM2's power-function EMA: weight on past step tau proportional to tau^gamma (Karras 2024).

    Parameterised by sigma_rel, the profile's width relative to training time; every
    value in ``sigma_rels`` is tracked (the first is sampled) and, with
    ``snapshot_every``, saved for post-hoc reconstruction of any other sigma_rel
    (``difftk ema RUN --sigma-rel``).
    """

    name = "power"
    sigma_rels: list[float] = Field([0.05, 0.10], min_length=1,
                                    description="relative widths tracked; the first is sampled from")

    @field_validator("sigma_rels")
    @classmethod
    def _in_range(cls, value: list[float]) -> list[float]:
        for s in value:
            if not 0 < s < SIGMA_REL_MAX:
                raise ValueError(f"each sigma_rel must lie in (0, {SIGMA_REL_MAX:.4f}), got {s}")
        if len(set(value)) != len(value):
            raise ValueError("sigma_rels must be distinct")
        return value

    def decay(self, step, batch_size):
        return power_beta(sigma_rel_to_gamma(self.sigma_rels[0]), step)

    def tracks(self):
        return [(f"power-{s:.3f}", functools.partial(_power_decay, sigma_rel_to_gamma(s)))
                for s in self.sigma_rels]

    def profile_metadata(self, name):
        for s in self.sigma_rels:
            if name == f"power-{s:.3f}":
                return {"sigma_rel": s, "gamma": sigma_rel_to_gamma(s)}
        return {}


def _power_decay(gamma: float, step: int, batch_size: int) -> float:
    return power_beta(gamma, step)


@hookimpl
def register_ema(register):
    for cls in (FixedEma, NoEma, WarmupEma, PowerEma):
        register(cls)
