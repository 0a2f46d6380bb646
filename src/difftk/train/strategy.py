"""How the network is spread over the processes: ``train.strategy``.

- ``ddp``: every process holds the whole network; DistributedDataParallel averages the
  gradients during backward (overlapping the all-reduce with the backward pass).
- ``fsdp``: FSDP2 (``torch.distributed.fsdp.fully_shard``) shards parameters, gradients and
  optimizer state over the processes, for networks that do not fit one device. Each module
  of every ``nn.ModuleList`` (the blocks of a U-Net or DiT) is one sharding unit, the whole
  denoiser the root.

Both average the gradients over the processes, so the loss each process backpropagates is
its items' sum divided by its share of the global batch. In one process (no process group)
the network runs as it is.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from difftk.errors import DifftkError
from difftk.train.runtime import Runtime


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules FSDP shards one by one: each element of every ModuleList."""
    return [m for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst]


def check_strategy(strategy: str, runtime: Runtime, loss_scaled: bool) -> None:
    """Refuse, with a sentence, what the strategy cannot run."""
    if loss_scaled and runtime.distributed and strategy == "fsdp":
        # the scaler would see only this process's shards overflow, and processes would
        # disagree on skipping a step
        raise DifftkError('a loss-scaled precision (fp16) cannot run under train.strategy = '
                          '"fsdp"; use precision.name = "bf16"')


class DenoiserDataParallel(DistributedDataParallel):
    """DistributedDataParallel that also answers the denoiser's own attributes (schedule,
    target, variance), which the losses read from the module they were computed with."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":  # not set yet (inside DDP's own constructor)
                raise
            return getattr(self.module, name)


def distribute(model: nn.Module, strategy: str, runtime: Runtime, also=()) -> nn.Module:
    """The module the training forward pass goes through; ``model`` keeps the parameters
    (for FSDP, sharded in place: call this before building the optimizer). Under FSDP the
    modules ``also`` (the EMA copies) are sharded the same way, so averaging them is a
    local operation on each process's shards."""
    if not runtime.distributed:
        return model
    if strategy == "ddp":
        ids = [runtime.device.index] if runtime.device.type == "cuda" else None
        return DenoiserDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for module in (model, *also):
            for unit in shard_units(module):
                fully_shard(unit)
            fully_shard(module)
        return model
    raise DifftkError(f'train.strategy "{strategy}" is not one of "ddp", "fsdp"')


def gradient_sync(forward: nn.Module, sync: bool):
    """A context in which backward averages the gradients over the processes only if
    ``sync``: the micro-batches before the last of an accumulated step skip it."""
    if sync:
        return contextlib.nullcontext()
    if hasattr(forward, "no_sync"):  # DistributedDataParallel
        return forward.no_sync()
    if hasattr(forward, "set_requires_gradient_sync"):  # FSDP2
        return _fsdp_no_sync(forward)
    return contextlib.nullcontext()


@contextlib.contextmanager
def _fsdp_no_sync(module):
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) value gathered whole on every process; a plain tensor as it is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict with every sharded tensor gathered (a collective under FSDP:
    every process calls it), on the CPU."""
    return {k: full_tensor(v).detach().cpu() for k, v in module.state_dict().items()}


def gathered(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` with every sharded value gathered whole."""
    return {k: full_tensor(v).detach() for k, v in tensors.items()}


def load_full_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load whole (unsharded) tensors into ``module``, sharding them where it is sharded."""
    if any(hasattr(p, "device_mesh") for p in module.parameters()):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True))
    else:
        module.load_state_dict(state)


class _Gathered:
    """An optimizer seen through its state dict with every sharded tensor gathered whole."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def state_dict(self) -> dict:
        sd = self.optimizer.state_dict()
        sd["state"] = {i: {k: full_tensor(v) if isinstance(v, torch.Tensor) else v
                           for k, v in st.items()} for i, st in sd["state"].items()}
        return sd


def full_optimizer(optimizer: torch.optim.Optimizer):
    """What checkpoint.optimizer_tensors reads: the optimizer with its state gathered whole,
    so a checkpoint of a sharded run is the same file as one of a single process."""
    return _Gathered(optimizer)


def shard_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> dict:
    """A whole optimizer state dict cut to this process's shards of sharded parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(hasattr(p, "device_mesh") for p in params):
        return state
    from torch.distributed.tensor import distribute_tensor

    for idx, st in state["state"].items():
        p = params[int(idx)]
        if not hasattr(p, "device_mesh"):
            continue
        for key, value in st.items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                st[key] = distribute_tensor(value.to(p.device), p.device_mesh, p.placements)
    return state
