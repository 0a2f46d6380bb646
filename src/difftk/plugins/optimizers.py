"""Built-in optimizers."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from difftk.hookspecs import hookimpl
from difftk.optim.optimizer import Optimizer

# A moment decay rate: torch refuses values outside [0, 1) only once training starts.
Beta = Annotated[float, Field(ge=0, lt=1)]

Implementation = Literal["auto", "for_loop", "foreach", "fused"]
IMPLEMENTATION_HELP = (
    "how the update runs over the parameters: fused (one kernel for all of them), foreach "
    "(one multi-tensor op per step of the formula), for_loop (one op per parameter and step), "
    "or auto: fused where every parameter is a plain CPU or CUDA tensor, torch's own default "
    "elsewhere (foreach for sharded parameters); all compute the same update")


def implementation_flags(choice: str, params: list) -> dict[str, bool]:
    """The ``foreach`` / ``fused`` arguments of torch's Adam and AdamW for ``choice``.

    The fused kernels (torch.optim._fused_adam) read each parameter, gradient and moment
    once per step instead of once per elementwise op, which is what a step of a large
    network is bound by (the torchtitan and fast-DiT defaults on GPUs; on the CPU the fused
    kernel took 0.08x the for_loop's time on the digits U-Net and 0.27x on ddpm_cifar10,
    docs/performance.md). A sharded parameter (FSDP's DTensor) keeps torch's default.
    """
    if choice == "auto":  # params: tensors, or parameter groups (dicts with "params")
        params = [p for item in params for p in (item["params"] if isinstance(item, dict)
                                                   else [item])]
        plain = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                     and not hasattr(p, "device_mesh") for p in params)
        return {"fused": True} if plain else {}
    return {"for_loop": {"foreach": False}, "foreach": {"foreach": True},
            "fused": {"fused": True}}[choice]


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), EDM's optimizer: lr 1e-3 tuned there for sum reduction."""

    name = "adam"
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="moment decay rates, each in [0, 1)")
    eps: float = Field(1e-8, gt=0, description="denominator epsilon")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient")
    implementation: Implementation = Field("auto", description=IMPLEMENTATION_HELP)

    def build(self, params):
        params = list(params)
        return torch.optim.Adam(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                weight_decay=self.weight_decay,
                                **implementation_flags(self.implementation, params))


class AdamW(Optimizer):
    """AdamW with decoupled weight decay (Loshchilov & Hutter 2019)."""

    name = "adamw"
    lr: float = Field(1e-4, gt=0, description="peak learning rate")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="moment decay rates, each in [0, 1)")
    eps: float = Field(1e-8, gt=0, description="denominator epsilon")
    weight_decay: float = Field(0.01, ge=0, description="decoupled weight decay")
    implementation: Implementation = Field("auto", description=IMPLEMENTATION_HELP)

    def build(self, params):
        params = list(params)
        return torch.optim.AdamW(params, lr=self.lr, betas=self.betas, eps=self.eps,
                                 weight_decay=self.weight_decay,
                                 **implementation_flags(self.implementation, params))


@hookimpl
def register_optimizers(register):
    register(Adam)
    register(AdamW)
