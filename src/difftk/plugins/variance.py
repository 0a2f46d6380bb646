"""Built-in fixed reverse-step variances (Ho et al. 2020; seed 003 §3.1)."""

from __future__ import annotations

import torch

from difftk.diffusion.variance import Variance
from difftk.hookspecs import hookimpl


class FixedSmall(Variance):
    """The posterior variance beta_tilde_t = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t)."""

    name = "fixed_small"

    def log_variance(self, beta, beta_tilde, extra):
        return torch.log(beta_tilde.clamp(min=1e-20))


class FixedLarge(Variance):
    """The forward variance beta_t, the upper bound of the reverse variance."""

    name = "fixed_large"

    def log_variance(self, beta, beta_tilde, extra):
        return torch.log(beta.clamp(min=1e-20))


@hookimpl
def register_variance(register):
    register(FixedSmall)
    register(FixedLarge)
