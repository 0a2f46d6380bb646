"""The run state: everything a checkpoint holds, and the one routine that loads it back.

Resuming a run and the NaN guard's restore both go through ``RunState.load``: resuming
also restores the random streams and the guard's counters; the guard's restore keeps the
streams running (the batches that failed are not replayed) and its counters going.
``last_checkpoint`` is the one way to find the checkpoint to go back to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from difftk.errors import CheckpointError, DifftkError
from difftk.nn.architecture import DataSpec
from difftk.optim.ema import EmaModel
from difftk.recipe import Recipe, recipe_from_text
from difftk.run import checkpoint as ckpt_io
from difftk.run.checkpoint_writing import save_checkpoint, save_snapshot
from difftk.run.optimizer_state import optimizer_state, optimizer_tensors
from difftk.run.runtime import Runtime
from difftk.train.nan_guard import NanGuard
from difftk.train.strategy import (
    full_optimizer,
    full_state_dict,
    gathered,
    load_full_state_dict,
    shard_optimizer_state,
)

# Settings that may change between an interrupted run and its resumption: how the work is
# spread (processes, accumulation, sharding) does not change the result, and a run directory
# may move (to another disk or machine).
RESUMABLE = {("train", "steps"), ("train", "time_limit"), ("run", "device"), ("run", "out_dir"),
             ("run", "name"), ("train", "grad_accumulation"), ("train", "strategy")}


def recipe_difference(a: dict, b: dict) -> str | None:
    """The first setting (``section.key``) that differs between two recipes and may not
    change on resumption; None when a run trained with ``a`` may go on with ``b``."""
    for section in sorted(set(a) | set(b)):
        if section == "log":
            continue
        sa, sb = a.get(section, {}), b.get(section, {})
        for key in sorted(set(sa) | set(sb)):
            if (section, key) not in RESUMABLE and sa.get(key) != sb.get(key):
                return f"{section}.{key}"
    return None


def checkpoint_to_resume(run_dir: Path, resume: bool) -> ckpt_io.Checkpoint | None:
    """The checkpoint ``--resume`` continues from; None for a new run. A new run refuses a
    directory that already holds one, and ``--resume`` one that holds none."""
    ckpt_dir = run_dir / "checkpoints"
    if resume:
        if not ckpt_io.holds_checkpoints(ckpt_dir):
            raise CheckpointError(f"{run_dir}: nothing to resume (no checkpoints/latest)")
        return ckpt_io.load_intact(ckpt_dir)  # latest, or the newest intact one, with a sentence
    if ckpt_io.holds_checkpoints(ckpt_dir):
        raise DifftkError(f"{run_dir} already holds a run; resume it with --resume or "
                          f"choose another name with --set run.name=NAME")
    return None


def check_resumable(ck: ckpt_io.Checkpoint, recipe: Recipe) -> None:
    saved = recipe_from_text(ck.recipe_toml, source=str(ck.path))
    diff = recipe_difference(saved.to_dict(), recipe.to_dict())
    if diff:
        raise CheckpointError(
            f"{ck.path}: the run was trained with a different {diff}; resume "
            f"with the same recipe or start a new run (--set run.name=NAME)")


@dataclass
class RunState:
    """The live objects a checkpoint saves, and the optimizer step count."""

    run_dir: Path
    recipe: Recipe
    spec: DataSpec
    kind: str  # "image" or "vector": how samples are drawn and compared
    runtime: Runtime
    model: nn.Module
    ema: EmaModel
    optimizer: torch.optim.Optimizer
    scaler: object | None  # the precision policy's loss scaler
    guard: NanGuard
    batches: object  # data.batches.BatchStream
    noise_history: object | None = None  # a loss-aware distribution's LossHistory
    step: int = 0
    seconds_before: float = 0.0  # training seconds of earlier sessions (from the checkpoint)
    session_start: float | None = None  # perf_counter when this session's loop started

    def start_clock(self) -> None:
        self.session_start = time.perf_counter()

    def train_seconds(self) -> float:
        """Seconds spent in the training loop so far, earlier sessions included: what
        train.time_limit and a time-aware learning-rate decay count."""
        now = 0.0 if self.session_start is None else time.perf_counter() - self.session_start
        return self.seconds_before + now

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def last_checkpoint(self) -> Path | None:
        """The newest checkpoint whose checksums and finite weights were checked."""
        return ckpt_io.newest_intact(self.ckpt_dir)[0]

    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        """The batch plan's position and rank 0's own stream (what the network draws, e.g.
        dropout); the noise of each step is keyed by its number (train/draws.py)."""
        out = {f"batches.{k}": v for k, v in self.batches.state().items()}
        out["torch_cpu"] = torch.get_rng_state()
        device = self.runtime.device
        if device.type == "cuda":  # dropout on the GPU draws from the device's stream
            out["torch_cuda"] = torch.cuda.get_rng_state(device)
        return out

    def save(self) -> Path | None:
        """Every process calls this (gathering sharded weights is a collective); rank 0
        writes, and the others wait until the checkpoint is on disk."""
        tensors = {"model": full_state_dict(self.model), "ema": gathered(self.ema.state_dict()),
                   "rng": self._rng_tensors()}
        extra = gathered(self.ema.extra_state_dict())
        opt_tensors, opt_meta = optimizer_tensors(full_optimizer(self.optimizer))
        path = None
        if self.runtime.is_main:
            path = self._write(tensors, extra, opt_tensors, opt_meta)
        self.runtime.barrier()
        return path

    def _write(self, tensors, extra, opt_tensors, opt_meta) -> Path:
        state = {"step": self.step, "train_seconds": self.train_seconds(), "optimizer": opt_meta,
                 "spec": {"shape": list(self.spec.shape), "out_channels": self.spec.out_channels,
                          "num_classes": self.spec.num_classes},
                 "kind": self.kind}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        state["nan_guard"] = self.guard.state_dict()
        tensors = {**tensors, "optimizer": opt_tensors}
        if self.noise_history is not None:
            tensors["noise_history"] = self.noise_history.state_dict()
        if extra:
            tensors["ema_extra"] = extra
        return save_checkpoint(self.ckpt_dir, self.step, tensors, state,
                                       self.recipe.to_toml(), self.recipe.log.keep_last)

    def load(self, ck: ckpt_io.Checkpoint, streams: bool) -> None:
        """Weights, EMA, optimizer, loss scale and step from ``ck``; with ``streams`` also
        the random streams and the NaN guard's counters (resuming), without them the
        streams run on and the counters go on (the NaN guard's restore)."""
        try:
            load_full_state_dict(self.model, ck.tensors["model"])
            self._load_ema(ck.tensors["ema"], ck.tensors.get("ema_extra", {}))
            self.optimizer.load_state_dict(shard_optimizer_state(
                self.optimizer,
                optimizer_state(ck.tensors["optimizer"], ck.state["optimizer"])))
        except (RuntimeError, KeyError, ValueError, IndexError) as exc:
            raise CheckpointError(f"{ck.path}: does not fit this recipe's model ({exc})") from None
        if self.scaler is not None and "scaler" in ck.state:
            self.scaler.load_state_dict(ck.state["scaler"])
        if streams:
            rng = ck.tensors["rng"]
            self.batches.load_state({k.split(".", 1)[1]: v for k, v in rng.items()
                                     if k.startswith("batches.")})
            device = self.runtime.device
            if self.runtime.is_main:  # the other ranks' own streams start afresh
                torch.set_rng_state(rng["torch_cpu"])
                if "torch_cuda" in rng and device.type == "cuda":
                    torch.cuda.set_rng_state(rng["torch_cuda"], device)
            else:
                torch.manual_seed(self.runtime.seed(self.recipe.run.seed) + ck.step)
            self.guard.load_state_dict(ck.state.get("nan_guard", {}))
            if self.noise_history is not None and "noise_history" in ck.tensors:
                self.noise_history.load_state_dict(ck.tensors["noise_history"])
            self.seconds_before = float(ck.state.get("train_seconds", 0.0))
            self.session_start = None
        self.step = ck.step

    def _load_ema(self, sampled: dict, extra: dict) -> None:
        """The sampled EMA copy and every further profile (keys ``<profile>/<name>`` in
        ``ema_extra``), sharded where the run is."""
        names = list(self.ema.shadows)
        groups = {name: {} for name in names[1:]}
        for key, value in extra.items():
            name, _, rest = key.partition("/")
            groups.setdefault(name, {})[rest] = value
        for name in names:
            load_full_state_dict(self.ema.shadows[name], sampled if name == names[0] else groups[name])

    def save_snapshot(self) -> Path | None:
        """Raw weights and every EMA profile under snapshots/<step>/, for post-hoc EMA
        (gathered by every process, written by rank 0)."""
        rule = self.ema.rule
        groups = {name: gathered(group) for name, group in self.ema.snapshot(self.model).items()}
        meta = {"step": self.step, "batch_size": self.recipe.train.batch_size,
                "ema": rule.name, "profiles": {name: rule.profile_metadata(name)
                                               for name in groups if name != "model"}}
        if not self.runtime.is_main:
            return None
        return save_snapshot(self.run_dir / "snapshots", self.step, groups, meta)
