"""Exponential moving averages of the weights (seed 001 §11).

The EMA is a shadow copy, never used in the training forward pass; it is saved with
every checkpoint and samples are drawn from it by default. A rule may track several
averaging profiles at once (EDM2's power EMA keeps two, Karras et al. 2024); the first
is the one sampled. With ``snapshot_every`` the run also saves the raw weights and every
tracked profile under ``snapshots/`` for post-hoc EMA (seed 001 §11.2).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import ClassVar

import torch
from pydantic import Field
from torch import nn

from difftk.component import Component

Decay = Callable[[int, int], float]


class Ema(Component):
    """A schedule for the averaging decay beta(step)."""

    family: ClassVar[str] = "ema"
    enabled: ClassVar[bool] = True

    snapshot_every: int = Field(0, ge=0, description="save raw weights and EMA profiles to "
                                "snapshots/ every N optimizer steps for post-hoc EMA (0: never)")

    def decay(self, step: int, batch_size: int) -> float:
        """beta after optimizer step ``step`` (1-based): ema <- beta ema + (1 - beta) weights."""
        raise NotImplementedError

    def tracks(self) -> list[tuple[str, Decay]]:
        """(name, decay) of each averaged copy to keep; the first is sampled from."""
        return [("ema", self.decay)]

    def profile_metadata(self, name: str) -> dict:
        """What a snapshot records about the profile ``name`` (post-hoc EMA reads it)."""
        return {}


# The sampled copy starts as the initial network and keeps a share beta(k) of itself at
# update k, so after s updates prod_k beta(k) of it is still the initial weights. Above this
# share its samples are mostly noise (a fixed beta = 0.999 after 281 steps: 75%), so grids,
# metrics, `difftk sample` and `difftk eval` use the raw weights instead and say so.
INITIAL_SHARE_LIMIT = 0.1


def initial_share(rule: Ema, step: int, batch_size: int) -> float:
    """prod_{k=1..step} beta_k of the sampled profile: the initial network's weight in it."""
    if not rule.enabled:
        return 0.0
    decay = rule.tracks()[0][1]
    share = 1.0
    for k in range(1, step + 1):
        share *= decay(k, batch_size)
        if share < 1e-6:
            return 0.0
    return share


def too_young(rule: Ema, step: int, batch_size: int) -> str | None:
    """Why the EMA copy should not be sampled after ``step`` updates, or None when it can."""
    share = initial_share(rule, step, batch_size)
    if share <= INITIAL_SHARE_LIMIT:
        return None
    return (f"the EMA ({rule.name}) has seen {step} steps and is still {share:.0%} the initial "
            f"network, so samples use the raw weights (an EMA that suits short runs: "
            f"ema.name = \"power\" or \"ema_warmup\")")


class EmaModel:
    """The shadow copies of a module and their update."""

    def __init__(self, model: nn.Module, rule: Ema):
        self.rule = rule
        self.tracks = rule.tracks()
        self.shadows = {name: copy.deepcopy(model).eval().requires_grad_(False)
                        for name, _ in self.tracks}
        self.module = self.shadows[self.tracks[0][0]]
        # The tensors each update reads and writes, listed once, at the first update (after
        # FSDP has sharded the copies in place): walking the module tree for them costs
        # more than the update itself on a small network. Loading a state dict copies into
        # these same tensors, so the lists stay valid.
        self._shadow_tensors: dict[str, tuple[list, list]] | None = None
        self._source: tuple[int, list, list] | None = None

    def _model_tensors(self, model: nn.Module) -> tuple[list, list]:
        if self._source is None or self._source[0] != id(model):
            self._source = (id(model), list(model.parameters()), list(model.buffers()))
        return self._source[1], self._source[2]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, batch_size: int,
               applied: torch.Tensor | None = None) -> None:
        """ema <- ema + (1 - beta) (weights - ema) for every tracked copy, in one multi-tensor
        lerp per copy (seed 001 §11); buffers (e.g. normalisation statistics) are copied.
        ``applied``: a device bool; where false the copies stay as they are (a step the NaN
        guard skipped on the device: the lerp's weight is 0, no host sync)."""
        if not self.rule.enabled:
            return
        cur, cur_buffers = self._model_tensors(model)
        if self._shadow_tensors is None:
            self._shadow_tensors = {name: (list(shadow.parameters()), list(shadow.buffers()))
                                    for name, shadow in self.shadows.items()}
        for name, decay in self.tracks:
            params, buffers = self._shadow_tensors[name]
            beta = decay(step, batch_size)
            if applied is None:
                torch._foreach_lerp_(params, cur, 1.0 - beta)
            else:
                weight = applied.to(params[0].dtype) * (1.0 - beta)
                torch._foreach_lerp_(params, cur, [weight] * len(params))
            if buffers:
                torch._foreach_copy_(buffers, cur_buffers)

    def state_dict(self):
        """The sampled copy: what ``ema.safetensors`` holds."""
        return self.module.state_dict()

    def load_state_dict(self, state):
        self.module.load_state_dict(state)

    def extra_state_dict(self) -> dict[str, torch.Tensor]:
        """Every further tracked copy, keys prefixed by the profile name."""
        return {f"{name}/{k}": v for name, _ in self.tracks[1:]
                for k, v in self.shadows[name].state_dict().items()}

    def snapshot(self, model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
        """The raw weights ("model") and every tracked profile, for post-hoc EMA."""
        out = {"model": model.state_dict()}
        out.update({name: self.shadows[name].state_dict() for name, _ in self.tracks})
        return out
