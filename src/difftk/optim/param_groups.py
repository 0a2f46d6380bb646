"""Parameter groups with their own learning-rate multiplier, declared by the network.

A module of the network may define ``lr_groups() -> {group name: (lr multiplier, [params])}``
(seed 004 trains the learned output map rho0, rho1 of its ScoreNet at lr 0.2 beside 0.01 for
the rest: a multiplier of 20). The optimizer then gets one group per declared name plus the
default group of every other parameter, first. A group's learning rate is always
``peak lr x its multiplier x the schedule's factor``, so schedules and the NaN guard's
lowering apply to every group alike.

A declared multiplier of 1 joins the default group, so a network that declares nothing
different keeps the single group (and the optimizer state layout) it always had.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

DEFAULT_GROUP = "default"
MULTIPLIER = "lr_multiplier"  # key of a group's multiplier in torch's param_groups


def parameter_groups(model: nn.Module) -> list[dict[str, Any]]:
    """torch optimizer groups: the default group first, then each declared group, each with
    its ``name`` and ``lr_multiplier``; the parameters keep the network's order."""
    declared: dict[str, tuple[float, list[nn.Parameter]]] = {}
    owner: dict[int, str] = {}
    for module in model.modules():
        groups = getattr(module, "lr_groups", None)
        if not callable(groups):
            continue
        for name, (multiplier, params) in groups().items():
            if float(multiplier) == 1.0:
                continue
            if name == DEFAULT_GROUP:
                raise ValueError(f'"{DEFAULT_GROUP}" is the group of undeclared parameters')
            for p in params:
                if owner.setdefault(id(p), name) != name:
                    raise ValueError(f"a parameter is declared in two lr groups: "
                                     f"{owner[id(p)]} and {name}")
            mult, members = declared.setdefault(name, (float(multiplier), []))
            if mult != float(multiplier):
                raise ValueError(f"lr group {name} is declared with multipliers {mult} and "
                                 f"{multiplier}")
            members.extend(params)
    default = [p for p in model.parameters() if id(p) not in owner]
    out = [{"params": default, "name": DEFAULT_GROUP, MULTIPLIER: 1.0}] if default else []
    out += [{"params": params, "name": name, MULTIPLIER: multiplier}
            for name, (multiplier, params) in declared.items()]
    return out


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's lr = ``lr`` x the group's multiplier (1 for groups without one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get(MULTIPLIER, 1.0)
