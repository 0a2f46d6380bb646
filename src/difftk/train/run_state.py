"""The run state: everything a checkpoint holds, and the one routine that loads it back.

Resuming a run and the NaN guard's restore both go through ``RunState.load``: resuming
also restores the random streams and the guard's counters; the guard's restore keeps the
streams running (the batches that failed are not replayed) and its counters going.
``last_checkpoint`` is the one way to find the checkpoint to go back to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from difftk.errors import CheckpointError, DifftkError
from difftk.nn.architecture import DataSpec
from difftk.recipe import Recipe, recipe_from_text
from difftk.train import checkpoint as ckpt_io
from difftk.train.ema import EmaModel
from difftk.train.nan_guard import NanGuard

# Settings that may change between an interrupted run and its resumption.
RESUMABLE = {("train", "steps"), ("train", "time_limit"), ("run", "device")}


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
    latest = run_dir / "checkpoints" / "latest"
    if resume:
        if not latest.exists():
            raise CheckpointError(f"{run_dir}: nothing to resume (no checkpoints/latest)")
        return ckpt_io.load_checkpoint(latest)
    if latest.exists():
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
    device: torch.device
    model: nn.Module
    ema: EmaModel
    optimizer: torch.optim.Optimizer
    scaler: object | None  # the precision policy's loss scaler
    guard: NanGuard
    batches: object  # data.batches.BatchStream
    noise_gen: torch.Generator
    step: int = 0

    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def last_checkpoint(self) -> Path | None:
        latest = self.ckpt_dir / "latest"
        return latest.resolve() if latest.exists() else None

    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"batches.{k}": v for k, v in self.batches.state().items()}
        out["noise"] = self.noise_gen.get_state()
        out["torch_cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":  # dropout on the GPU draws from the device's stream
            out["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return out

    def save(self) -> Path:
        opt_tensors, opt_meta = ckpt_io.optimizer_tensors(self.optimizer)
        state = {"step": self.step, "optimizer": opt_meta,
                 "spec": {"shape": list(self.spec.shape), "out_channels": self.spec.out_channels,
                          "num_classes": self.spec.num_classes},
                 "kind": self.kind}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        state["nan_guard"] = self.guard.state_dict()
        tensors = {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                   "optimizer": opt_tensors, "rng": self._rng_tensors()}
        if self.ema.extra_state_dict():
            tensors["ema_extra"] = self.ema.extra_state_dict()
        return ckpt_io.save_checkpoint(self.ckpt_dir, self.step, tensors, state,
                                       self.recipe.to_toml(), self.recipe.log.keep_last)

    def load(self, ck: ckpt_io.Checkpoint, streams: bool) -> None:
        """Weights, EMA, optimizer, loss scale and step from ``ck``; with ``streams`` also
        the random streams and the NaN guard's counters (resuming), without them the
        streams run on and the counters go on (the NaN guard's restore)."""
        try:
            self.model.load_state_dict(ck.tensors["model"])
            self.ema.load_state_dict(ck.tensors["ema"])
            self.ema.load_extra_state_dict(ck.tensors.get("ema_extra", {}))
            self.optimizer.load_state_dict(
                ckpt_io.optimizer_state(ck.tensors["optimizer"], ck.state["optimizer"]))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{ck.path}: does not fit this recipe's model ({exc})") from None
        if self.scaler is not None and "scaler" in ck.state:
            self.scaler.load_state_dict(ck.state["scaler"])
        if streams:
            rng = ck.tensors["rng"]
            self.batches.load_state({k.split(".", 1)[1]: v for k, v in rng.items()
                                     if k.startswith("batches.")})
            self.noise_gen.set_state(rng["noise"])
            torch.set_rng_state(rng["torch_cpu"])
            if "torch_cuda" in rng and self.device.type == "cuda":
                torch.cuda.set_rng_state(rng["torch_cuda"], self.device)
            self.guard.load_state_dict(ck.state.get("nan_guard", {}))
        self.step = ck.step

    def save_snapshot(self) -> Path:
        """Raw weights and every EMA profile under snapshots/<step>/, for post-hoc EMA."""
        rule = self.ema.rule
        groups = self.ema.snapshot(self.model)
        meta = {"step": self.step, "batch_size": self.recipe.train.batch_size,
                "ema": rule.name, "profiles": {name: rule.profile_metadata(name)
                                               for name in groups if name != "model"}}
        return ckpt_io.save_snapshot(self.run_dir / "snapshots", self.step, groups, meta)
