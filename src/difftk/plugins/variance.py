"""Built-in reverse-step variances: fixed (Ho et al. 2020; seed 003 §3.1, §4.4) and learned
from the network's extra channels (seed 003 §4.2, §4.3 and §6.2)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from difftk.diffusion.variance import Variance
from difftk.hookspecs import hookimpl

# Floor on variances before the log: beta_tilde_1 = 0 and a direct output may reach 0.
MIN_VARIANCE = 1e-20


def _needs(extra, name: str):
    if extra is None:
        raise ValueError(f"the {name} variance needs the network's variance channels")
    return extra.float() if extra.dtype in (torch.float16, torch.bfloat16) else extra


class FixedSmall(Variance):
    """The posterior variance beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)."""

    name = "fixed_small"

    def log_variance(self, beta, beta_tilde, extra):
        return torch.log(beta_tilde.clamp(min=MIN_VARIANCE))


class FixedLarge(Variance):
    """The forward variance beta_t, the upper bound of the reverse variance."""

    name = "fixed_large"

    def log_variance(self, beta, beta_tilde, extra):
        return torch.log(beta.clamp(min=MIN_VARIANCE))


class Learned(Variance):
    """The network outputs sigma^2 itself (seed 003 §4.2, experiment 1).

    The sign of the output is free and its magnitude is the variance, sigma^2 = |out|
    (floored at 1e-20), so the gradient keeps the 1/sigma^4 scaling of seed 003 eq. 4.2
    that makes this parameterisation unstable.
    """

    name = "learned"
    learned = True
    start: Literal["beta", "zero"] = Field(
        "beta", description="what an output of 0 means: beta (sigma^2 = |out + beta_t|, so a "
        "zero-initialised output layer starts at the fixed-large variance) or zero (sigma^2 = "
        "|out|, which a zero-initialised network starts at 0: an infinite first loss)")

    def log_variance(self, beta, beta_tilde, extra):
        out = _needs(extra, self.name)
        if self.start == "beta":
            # Seed 003's network starts with a positive variance; ours zero-initialises its
            # output layers (ADM), so the head is offset by beta_t. The gradient keeps its
            # 1/sigma^4 scaling (eq. 4.2): the instability under study is unchanged.
            out = out + beta.to(out.dtype)
        return torch.log(out.abs().clamp(min=MIN_VARIANCE))


class LearnedLog(Variance):
    """The network outputs log sigma^2 (seed 003 §4.3, experiment 2; eq. 4.3)."""

    name = "learned_log"
    learned = True

    def log_variance(self, beta, beta_tilde, extra):
        return _needs(extra, self.name)


class LearnedRange(Variance):
    """log sigma^2 = v log beta + (1 - v) log beta_tilde, v = (out + 1) / 2: an interpolation
    between the two fixed variances (seed 003 §6.2 eq. 6.3-6.4; Nichol & Dhariwal 2021).

    improved-diffusion feeds the raw output in, assuming it stays in [-1, 1]; with
    ``squash`` (default) out is passed through tanh first, so sigma^2 stays within
    [beta_tilde, beta] whatever the network emits.
    """

    name = "learned_range"
    learned = True
    squash: bool = Field(True, description="tanh the output so v stays in [0, 1]")

    def log_variance(self, beta, beta_tilde, extra):
        out = _needs(extra, self.name)
        if self.squash:
            out = torch.tanh(out)
        v = (out + 1.0) / 2.0
        log_large = torch.log(beta.clamp(min=MIN_VARIANCE)).to(out.dtype)
        log_small = torch.log(beta_tilde.clamp(min=MIN_VARIANCE)).to(out.dtype)
        return v * log_large + (1.0 - v) * log_small


@hookimpl
def register_variance(register):
    for cls in (FixedSmall, FixedLarge, Learned, LearnedLog, LearnedRange):
        register(cls)
