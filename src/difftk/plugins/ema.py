"""Built-in EMA rules (seed 001 §11.1)."""

from __future__ import annotations

from pydantic import Field

from difftk.hookspecs import hookimpl
from difftk.train.ema import Ema


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


@hookimpl
def register_ema(register):
    register(FixedEma)
    register(NoEma)
