"""Loss weightings w(SNR): how much each noise level counts (seed 001 §7).

A weighting acts on the per-sample MSE of the trained target (seed 001 eq. 39) when
``relative_to = "target"``. With ``relative_to = "x0"`` the formula is the weight on
the x0-MSE, and the objective divides by the target's error factor, so that for
eps-prediction min(SNR, gamma) becomes min(SNR, gamma) / SNR (the Min-SNR paper). With
``relative_to = "eps"`` it is the weight on the eps-MSE (DDPM's L_simple, where P2 is
defined, Choi et al. 2022 eq. 8): ||eps err||^2 = SNR ||x0 err||^2 on every Gaussian path
x_t = alpha x0 + sigma eps, so the x0-MSE gets w SNR.

A weighting may also learn part of the weight: ``uncertainty_network`` gives a module of the
noise level whose output u is the loss's log-variance there (EDM2, Karras et al. 2024b §5),
and the objective trains l / e^u + u.

Most weightings are functions of SNR alone and implement ``__call__(snr)``. A weighting
that needs the schedule (the ELBO's, which depends on the step from t - 1 to t, seed 003
eq. 4.6) declares ``needs_table`` (table_rule.py) and overrides ``at(levels, schedule)``
instead.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field
from torch import Tensor

from difftk.component import Component
from difftk.diffusion.levels import Levels
from difftk.diffusion.table_rule import UsesTable

RelativeTo = Literal["target", "x0", "eps"]
RELATIVE_TO_HELP = "the MSE the formula weights: the trained target's, x0's or eps's"


class Weighting(Component, UsesTable):
    """A weight on the per-sample loss as a function of SNR."""

    family: ClassVar[str] = "weights"

    relative_to: RelativeTo = Field("target", description=RELATIVE_TO_HELP)
    # A weighting that reads the schedule's rates (not SNR alone) overrides ``at`` and says so.
    reads_schedule: ClassVar[bool] = False

    def __call__(self, snr: Tensor) -> Tensor:
        """w(SNR), elementwise."""
        raise NotImplementedError

    def at(self, levels: Levels, schedule=None) -> Tensor:
        """w at a batch of levels (float64, shape [B]); the schedule is given for table weightings."""
        return self(levels.snr.double())

    def uncertainty_network(self):
        """A module u(levels) -> [B] whose output is the loss's learned log-variance, trained
        with the denoiser (the objective takes l / e^u + u); None for a fixed weighting."""
        return None

    def on_x0(self, levels: Levels, target, schedule=None) -> Tensor:
        """The weight this puts on the x0-MSE when ``target`` is trained (float64, [B])."""
        w = self.at(levels, schedule).double()
        if self.relative_to == "target":
            # ||T_hat - T||^2 = k ||x0_hat - x0||^2, so w ||T err||^2 = (w k) ||x0 err||^2.
            return w * target.x0_error_factor(levels).double()
        if self.relative_to == "eps":
            return w * levels.snr.double()
        return w

    def on_target(self, levels: Levels, target, schedule=None) -> Tensor:
        """The weight to apply to the trained target's per-sample MSE (float32, [B])."""
        if self.relative_to == "target":
            return self.at(levels, schedule).float()
        return (self.on_x0(levels, target, schedule) / target.x0_error_factor(levels).double()).float()
