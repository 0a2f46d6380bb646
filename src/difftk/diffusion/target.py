"""Prediction targets: what the network regresses, as a linear map of (x0, eps).

Every target is T = a x0 + b eps with (a, b) from (alpha, sigma) (seed 000 §2, seed 001
§2), so one pair of formulas turns any prediction back into x0 or eps given x_t:

    x0 = (sigma T - b x_t) / (a sigma - b alpha),   eps = (a x_t - alpha T) / (a sigma - b alpha)

and, at fixed x_t, an error in T is an error in x0 scaled by |a - b alpha / sigma|. A
target may also precondition the network (EDM, seed 001 §8.1) by overriding
``preconditioning``, which the denoiser evaluates once per forward pass.

A target whose coefficients depend on the schedule's table (the posterior mean, seed 003
ch. 4) reads it from ``self.schedule``: the Denoiser ``bind``s its target to the run's
schedule once, and the objective and the losses use that bound target. Binding is the only
schedule-dependence of the base class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import PrivateAttr
from torch import Tensor

from difftk.component import Component
from difftk.diffusion.levels import Levels, broadcast
from difftk.diffusion.table_rule import UsesTable

# (a, b) with T = a x0 + b eps for x_t = alpha x0 + sigma eps, for the targets that are fixed
# functions of the level (seed 000 §2, seed 001 §2): the one table of them in difftk.
TARGET_COEFFICIENTS = {
    "x0": lambda alpha, sigma: (torch.ones_like(alpha), torch.zeros_like(alpha)),
    "eps": lambda alpha, sigma: (torch.zeros_like(alpha), torch.ones_like(alpha)),
    # v = alpha eps - sigma x0 (Salimans & Ho 2022; seed 001 §2.3)
    "v": lambda alpha, sigma: (-sigma, alpha),
    # score of q(x_t | x0) = -eps / sigma (seed 001 §2.4)
    "score": lambda alpha, sigma: (torch.zeros_like(alpha), -1.0 / sigma),
}


@dataclass(frozen=True)
class Preconditioning:
    """How a target wraps the network F at one batch of levels: F sees c_in x_t and the
    conditioning ``noise``, and the estimate is c_skip x_t + c_out F (Karras et al. 2022,
    seed 001 §8.1). ``c_in`` None is 1; ``c_out`` None is the identity (F is the estimate)."""

    noise: Tensor
    c_in: Tensor | None = None
    c_skip: Tensor | None = None
    c_out: Tensor | None = None

    def net_input(self, x_t: Tensor) -> Tensor:
        """What the network sees as its image input."""
        return x_t if self.c_in is None else broadcast(self.c_in, x_t) * x_t

    def prediction(self, out: Tensor, x_t: Tensor) -> Tensor:
        """The target estimate from the network's raw output."""
        if self.c_out is None:
            return out
        return broadcast(self.c_skip, x_t) * x_t + broadcast(self.c_out, out) * out


class Target(Component, UsesTable):
    """What the network regresses, and how its output becomes x0 and eps."""

    family: ClassVar[str] = "targets"

    _schedule: Any = PrivateAttr(default=None)

    def bind(self, schedule) -> Target:
        """This target tied to the run's schedule (a copy; the recipe's part is unchanged)."""
        bound = self.model_copy()
        bound._schedule = schedule
        return bound

    @property
    def schedule(self):
        """The schedule this target was bound to, or None."""
        return self._schedule

    def coefficients(self, levels: Levels) -> tuple[Tensor, Tensor]:
        """(a, b) with target = a x0 + b eps, each of shape [B]."""
        raise NotImplementedError

    def value(self, x0: Tensor, eps: Tensor, levels: Levels) -> Tensor:
        """The regression target for clean data x0 and noise eps."""
        a, b = self.coefficients(levels)
        return broadcast(a, x0) * x0 + broadcast(b, eps) * eps

    def preconditioning(self, levels: Levels) -> Preconditioning:
        """The network's input and output maps at ``levels``: none but the bound schedule's
        time conditioning unless the target preconditions."""
        if self._schedule is None:
            raise ValueError(f"the {self.name} target conditions the network on the schedule's "
                             "time: bind it to the schedule first (Target.bind)")
        return Preconditioning(noise=self._schedule.time_input(levels))

    def output_scale(self, levels: Levels) -> Tensor | None:
        """c_out of a preconditioned target (the network's raw output times c_out is the
        estimate's share beyond c_skip x_t), float64 [B]; None where the network's output is
        the estimate itself. What the network itself regresses is scaled by 1 / c_out."""
        return None

    def _solve(self, pred: Tensor, x_t: Tensor, levels: Levels) -> tuple[Tensor, Tensor]:
        a, b = (broadcast(c, x_t) for c in self.coefficients(levels))
        alpha, sigma = broadcast(levels.alpha, x_t), broadcast(levels.sigma, x_t)
        det = a * sigma - b * alpha
        return (sigma * pred - b * x_t) / det, (a * x_t - alpha * pred) / det

    def to_x0(self, pred: Tensor, x_t: Tensor, levels: Levels) -> Tensor:
        return self._solve(pred, x_t, levels)[0]

    def to_eps(self, pred: Tensor, x_t: Tensor, levels: Levels) -> Tensor:
        return self._solve(pred, x_t, levels)[1]

    def to_v(self, pred: Tensor, x_t: Tensor, levels: Levels) -> Tensor:
        """v = alpha eps - sigma x0 (Salimans & Ho 2022; seed 000 §2.3)."""
        x0, eps = self._solve(pred, x_t, levels)
        return broadcast(levels.alpha, x_t) * eps - broadcast(levels.sigma, x_t) * x0

    def to_score(self, pred: Tensor, x_t: Tensor, levels: Levels) -> Tensor:
        """The score of q(x_t | x0) at the estimate, -eps / sigma (seed 000 §2.4)."""
        return -self.to_eps(pred, x_t, levels) / broadcast(levels.sigma, x_t)

    def to_mean(self, pred: Tensor, x_t: Tensor, levels: Levels) -> Tensor:
        """The posterior mean mu_theta = c_x0 x0_hat + c_xt x_t of the step t -> t - 1 of the
        bound t-space schedule (seed 003 eq. 5.2, seed 004 Theory II.1)."""
        from difftk.diffusion.vlb import posterior

        post = posterior(self._require_table(), self.times(levels))
        c_x0 = broadcast(post.c_x0.to(x_t.device), x_t)
        c_xt = broadcast(post.c_xt.to(x_t.device), x_t)
        return c_x0 * self.to_x0(pred, x_t, levels) + c_xt * x_t

    def _require_table(self):
        schedule = self._schedule
        if schedule is None or not getattr(schedule, "has_table", False):
            raise ValueError("the posterior mean needs the target bound to a t-space schedule "
                             "(Target.bind)")
        return schedule

    def times(self, levels: Levels) -> Tensor:
        """The schedule time t of each level (read back from logSNR where not carried)."""
        if levels.t is not None:
            return levels.t
        return self._require_table().time_from_log_snr(levels.log_snr.double())

    def x0_error_factor(self, levels: Levels) -> Tensor:
        """k with ||T_hat - T||^2 = k ||x0_hat - x0||^2 at fixed x_t (seed 003 eq. 5.3, 5.7)."""
        a, b = self.coefficients(levels)
        return (a - b * levels.alpha / levels.sigma) ** 2
