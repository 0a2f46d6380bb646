"""Training memory: the budget of seed 001 §12.5 beside a measured peak.

Budget (seed 001 §12.5.1-2), with W the fp32 weight bytes and A32 the activations:
fp32 = W (master) + W (gradients) + optimizer moments (2W for Adam) + A32;
mixed (bf16/fp16) = W + W/2 (low-precision copy) + W/2 (gradients) + moments + A32 / 2;
activation checkpointing divides the activations by c.

What is measured, on any device including CPUs (which have no allocator statistics):
- A32: the bytes of the distinct tensors autograd saves for backward during one real
  forward pass at the recipe's batch size (``saved_tensors_hooks``; parameters and
  views are not double counted);
- the peak: every tensor storage created during one real training step (forward,
  backward, optimizer step) is counted while alive, through a ``TorchDispatchMode``
  that sees each op's new outputs and a finaliser per storage that sees it freed. The
  peak is those live bytes at their maximum plus what was alive before the step
  (weights, buffers, optimizer state, the batch). This counts what tensors hold, not
  allocator caching or fragmentation, which ``resource.getrusage`` deltas would mix in.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from difftk.recipe import Recipe
from difftk.run.assemble import assemble, data_spec, resolve_sigma_data
from difftk.run.training_data import training_data
from difftk.train.strategy import shard_units


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class LiveTensorBytes(TorchDispatchMode):
    """The bytes of tensor storages created inside the mode and still alive, and their peak."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._alive: dict[int, weakref.finalize] = {}

    def _freed(self, key: int, nbytes: int) -> None:
        self._alive.pop(key, None)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # In-place ops and views return storages that already existed: not new memory.
        inputs = {_storage_key(a) for a in tree_flatten((args, kwargs))[0]
                  if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes and key not in inputs and key not in self._alive:
                self._alive[key] = weakref.finalize(storage, self._freed, key, nbytes)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
        return out


def _unique_bytes(tensors) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        seen[_storage_key(t)] = t.untyped_storage().nbytes()
    return sum(seen.values())


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for state in optimizer.state.values() for v in state.values()
            if isinstance(v, torch.Tensor)]


@dataclass
class StepMeasurement:
    static_bytes: int  # alive before the step: weights, buffers, optimizer state, batch
    peak_bytes: int  # static + the most the step's own tensors held at once
    saved_bytes: int  # activations autograd saved for backward (outside checkpointed blocks)


@dataclass
class MemoryReport:
    parameters: int
    weight_bytes: int  # W: fp32 master weights
    optimizer_bytes: int  # optimizer state (Adam: m and v, 2W)
    activation_bytes: int  # A32, measured
    batch_size: int
    measured: StepMeasurement  # fp32, no checkpointing
    measured_checkpointed: StepMeasurement | None  # the architecture's `checkpoint = true`

    largest_unit_bytes: int = 0  # fp32 weights of the largest FSDP unit (train/strategy.py)

    def budget(self, mixed: bool, checkpoint_factor: float = 1.0, world_size: int = 1,
               strategy: str = "ddp", accumulation: int = 1) -> dict[str, float]:
        """Seed 001 §12.5 budget in bytes per device, by component.

        Each device's activations are those of its micro-batch, batch / (world size x
        accumulation). Under ``fsdp`` weights, gradients and moments are split over the
        devices, and each device also holds the largest unit's weights, gathered whole for
        its forward and backward; under ``ddp`` every device holds them all (its gradient
        buckets are views of the gradients: no second copy).
        """
        w, a = self.weight_bytes, self.activation_bytes / (world_size * accumulation)
        shard = world_size if strategy == "fsdp" else 1
        rows = {"master weights (fp32)": w / shard,
                "low-precision weight copy": w / 2 / shard if mixed else 0.0,
                "gradients": (w / 2 if mixed else w) / shard,
                "optimizer moments (fp32)": self.optimizer_bytes / shard,
                "activations": (a / 2 if mixed else a) / checkpoint_factor}
        if strategy == "fsdp" and world_size > 1:
            rows["gathered unit (fsdp)"] = self.largest_unit_bytes * (1.5 if mixed else 1.0)
        rows["total"] = sum(rows.values())
        return rows


def _batch(data, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    idx = torch.arange(batch_size) % data.train.shape[0]
    labels = data.train_labels[idx] if data.train_labels is not None else None
    return data.train[idx], labels


def measure_step(recipe: Recipe, spec, x0, labels, device: torch.device) -> StepMeasurement:
    """Build the recipe's model and optimizer in fp32 and measure one training step."""
    asm = assemble(recipe, spec, device)
    model = asm.denoiser.train()
    optimizer = recipe.parts["optimizer"].build(model.parameters())
    gen = torch.Generator(device).manual_seed(0)

    def step():
        per_sample, _ = asm.objective(model, x0, labels, gen)
        per_sample.float().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: the optimizer state exists from here on, as in every later step
    param_keys = {_storage_key(p) for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        key = _storage_key(t)
        if key not in param_keys:
            saved[key] = t.untyped_storage().nbytes()
        return t

    static = _unique_bytes([*model.parameters(), *model.buffers(), *_optimizer_tensors(optimizer),
                            x0, *([labels] if labels is not None else [])])
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), LiveTensorBytes() as live:
        step()
    return StepMeasurement(static, static + live.peak, sum(saved.values()))


def memory_report(recipe: Recipe, batch_size: int | None = None,
                  device: torch.device | None = None) -> MemoryReport:
    """Measure the recipe's model at its batch size (fp32), with and without checkpointing."""
    device = device or torch.device("cpu")
    trained_on = training_data(recipe, device)  # a latent recipe trains on its latents
    data = trained_on.data
    recipe = resolve_sigma_data(trained_on.recipe, data.sigma_data)
    spec = data_spec(recipe, data)
    batch = batch_size or recipe.train.batch_size
    x0, labels = _batch(data, batch)
    x0 = x0.to(device)
    labels = labels.to(device) if labels is not None else None
    plain = measure_step(recipe, spec, x0, labels, device)
    checkpointed = None
    model_part = recipe.parts["model"]
    if "checkpoint" in type(model_part).model_fields:  # architectures that can recompute blocks
        ck_recipe = recipe.with_parts(model=model_part.model_copy(update={"checkpoint": True}))
        checkpointed = measure_step(ck_recipe, spec, x0, labels, device)
    model = assemble(recipe, spec, device).denoiser
    params = sum(p.numel() for p in model.parameters())
    units = shard_units(model) or [model]
    largest_unit = max(sum(p.numel() * 4 for p in u.parameters()) for u in units)
    weight_bytes = sum(p.numel() * 4 for p in model.parameters())
    optimizer = recipe.parts["optimizer"].build(model.parameters())
    opt_bytes = _optimizer_state_bytes(model, optimizer)
    return MemoryReport(params, weight_bytes, opt_bytes, plain.saved_bytes, batch, plain, checkpointed,
                        largest_unit)


def _optimizer_state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """The optimizer's state after one step on zero gradients (fp32 moments; step counters)."""
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    return _unique_bytes(_optimizer_tensors(optimizer))
