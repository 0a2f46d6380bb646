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
from difftk.run.runtime import Runtime


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


def local_shard(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``full`` cut the way ``like`` (a sharded DTensor) is cut. Every process holds the
    whole tensor (each read the checkpoint), so each keeps its own shard without
    communicating (``src_data_rank=None``)."""
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(like.device, like.dtype), like.device_mesh, like.placements,
                             src_data_rank=None)


def load_full_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load whole (unsharded) tensors into ``module``, sharding them where it is sharded."""
    own = module.state_dict()
    if not any(hasattr(v, "device_mesh") for v in own.values()):
        module.load_state_dict(state)
        return
    if set(own) != set(state):
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        raise RuntimeError(f"missing keys {missing[:3]}, unexpected keys {unexpected[:3]}")
    module.load_state_dict({k: local_shard(state[k], v) if hasattr(v, "device_mesh") else state[k]
                            for k, v in own.items()})


class _Gathered:
    """An optimizer seen through its state dict with every sharded tensor gathered whole."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    def state_dict(self) -> dict:
        sd = self.optimizer.state_dict()
        # every process gathers in the same order (index, then name): a resumed optimizer's
        # state keeps the order it was loaded in, which need not be the same everywhere
        sd["state"] = {i: {k: full_tensor(st[k]) if isinstance(st[k], torch.Tensor) else st[k]
                           for k in sorted(st)} for i, st in sorted(sd["state"].items())}
        return sd


def full_optimizer(optimizer: torch.optim.Optimizer):
    """What optimizer_state.optimizer_tensors reads: the optimizer with its state gathered whole,
    so a checkpoint of a sharded run is the same file as one of a single process."""
    return _Gathered(optimizer)


def shard_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> dict:
    """A whole optimizer state dict cut to this process's shards of sharded parameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if not any(hasattr(p, "device_mesh") for p in params):
        return state
    for idx, st in state["state"].items():
        p = params[int(idx)]
        if not hasattr(p, "device_mesh"):
            continue
        for key, value in st.items():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                st[key] = local_shard(value, p)
    return state
