"""Checkpoints: safetensors only (loading one cannot run code), verified when read.

A checkpoint is a directory ``checkpoints/<step>/`` holding model, ema, optimizer and rng
weights (safetensors), the resolved ``recipe.toml`` and ``state.json``; ``state.json``
records the sha256 of every other file, checked whenever a file is loaded. ``latest`` is
a relative symbolic link to the newest step directory. run/checkpoint_writing.py writes
them so that a crash never leaves a half one.

Reading a run (``load_intact``) takes ``latest`` when it is intact and otherwise falls
back to the newest intact step directory, with a sentence naming what was damaged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from difftk.errors import CheckpointError
from difftk.run.state_record import state_digest, state_problem

FILES = ("model", "ema", "optimizer", "rng")
# The random streams a resumed run restores (RunState._rng_tensors); torch_cuda is optional.
RNG_STREAMS = ("torch_cpu", "batches.drawn")
# Reads of a run's newest checkpoint retried when training pruned what was being read.
READ_ATTEMPTS = 5
# state.json fields that a checkpoint cannot be read without (run/state_record.py checks
# their types and bounds).
REQUIRED_STATE = ("step", "spec", "files")


# ------------------------------------------------------------------ verification

def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def nonfinite_tensors(group: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or inf."""
    return [k for k, v in group.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def snapshot_problem(path: Path, meta: dict) -> str | None:
    """Why the EMA snapshot in ``path`` cannot be averaged in (its record, a checksum, a
    tensor that is not finite), or None. Snapshots written before their files were
    checksummed are checked for finiteness only."""
    if "state_sha256" in meta and meta["state_sha256"] != state_digest(meta):
        return "snapshot.json is damaged or edited (its own checksum does not match)"
    step = meta.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= 10 ** 15:
        return f"snapshot.json's step is {step!r}, not a step number"
    files = meta.get("files")
    names = sorted(files) if isinstance(files, dict) else sorted(
        p.name for p in path.glob("*.safetensors"))
    for name in names:
        try:
            data = (path / name).read_bytes()
        except OSError as exc:
            return f"{name} is unreadable ({exc.strerror or exc})"
        if isinstance(files, dict) and digest(data) != files[name]:
            return f"{name} is damaged (its checksum does not match snapshot.json)"
        try:
            tensors = load_safetensors(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            return f"{name} is damaged or truncated ({exc})"
        bad = nonfinite_tensors(tensors)
        if bad:
            return f"{name}: {len(bad)} of {len(tensors)} tensors hold NaN or inf"
    return None


# ------------------------------------------------------------------ reading

@dataclass
class Checkpoint:
    path: Path
    tensors: dict[str, dict[str, torch.Tensor]]
    state: dict[str, Any]
    recipe_toml: str

    @property
    def step(self) -> int:
        return int(self.state["step"])


def step_dirs(root: Path) -> list[Path]:
    """The step directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.name.isdigit() and p.is_dir() and not p.is_symlink())


def holds_checkpoints(root: Path) -> bool:
    """Whether ``root`` (a checkpoints directory) has anything a run could resume from,
    intact or not: a ``latest`` link, even a dangling one, or a step directory."""
    return (root / "latest").is_symlink() or (root / "latest").exists() or bool(step_dirs(root))


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept a run directory, its checkpoints directory, ``latest``, or a step directory."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    for candidate in (path, path / "latest", path / "checkpoints" / "latest"):
        problem = _link_problem(candidate)
        if problem:
            raise CheckpointError(f"{candidate}: {problem}")
        if (candidate / "state.json").is_file():
            return candidate.resolve()
    raise CheckpointError(f"{path}: holds no checkpoint (no state.json, no checkpoints/latest)")


def _link_problem(link: Path) -> str | None:
    """Why a ``latest`` link cannot be followed (dangling, a loop), or None."""
    if not link.is_symlink():
        return None
    try:
        target = link.resolve(strict=True)
    except RuntimeError:  # a loop on Python < 3.13
        return "is a link that loops"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a link that loops"
        return f"points to {os.readlink(link)}, which does not exist"
    return None if target.is_dir() else f"points to {os.readlink(link)}, which is not a directory"


def _read_state(ckpt: Path) -> dict[str, Any]:
    try:
        state = json.loads((ckpt / "state.json").read_text())
    except OSError as exc:
        raise CheckpointError(f"{ckpt}: state.json is unreadable ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{ckpt}: state.json is not valid JSON ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt}: state.json holds a {type(state).__name__}, "
                              "not an object with the step, spec and file checksums")
    for key in REQUIRED_STATE:
        if key not in state:
            raise CheckpointError(f"{ckpt}: state.json has no {key!r}")
    problem = state_problem(state)
    if problem is not None:
        raise CheckpointError(f"{ckpt}: {problem}")
    return state


def _verified_bytes(ckpt: Path, filename: str, state: dict) -> bytes:
    file = ckpt / filename
    expected = state["files"].get(filename)
    if expected is None:
        raise CheckpointError(f"{file}: has no checksum in state.json, so it cannot be trusted")
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing from the checkpoint") from None
    except OSError as exc:
        raise CheckpointError(f"{file}: is unreadable ({exc.strerror})") from None
    if digest(data) != expected:
        raise CheckpointError(f"{file}: is damaged or truncated (its checksum does not match "
                              "state.json)")
    return data


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    groups: Iterable[str] = FILES) -> Checkpoint:
    """Load and verify the checkpoint at ``path`` (no fallback): every file it reads must
    match its checksum in ``state.json``. ``groups`` picks the weight files to load
    (sampling needs no optimizer); optional extras such as ``ema_extra`` come with ``ema``."""
    ckpt = resolve_checkpoint_dir(path)
    state = _read_state(ckpt)
    recipe_bytes = _verified_bytes(ckpt, "recipe.toml", state)
    try:
        recipe_toml = recipe_bytes.decode()
        tomllib.loads(recipe_toml)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CheckpointError(f"{ckpt / 'recipe.toml'}: is not a readable TOML recipe ({exc})") \
            from None
    groups = list(groups)
    if "ema" in groups:
        groups += sorted(f[:-len(".safetensors")] for f in state["files"]
                         if f.endswith(".safetensors") and f[:-len(".safetensors")] not in FILES)
    tensors = {}
    for name in groups:
        file = ckpt / f"{name}.safetensors"
        data = _verified_bytes(ckpt, file.name, state)
        try:
            tensors[name] = {k: v.to(map_location) for k, v in load_safetensors(data).items()}
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{file}: is damaged or truncated ({exc})") from None
    if "rng" in tensors:
        missing = [s for s in RNG_STREAMS if s not in tensors["rng"]]
        if missing:
            raise CheckpointError(f"{ckpt / 'rng.safetensors'}: lacks the random stream(s) "
                                  f"{', '.join(missing)}")
    if "optimizer" in tensors:
        meta = state.get("optimizer")
        if not isinstance(meta, dict) or not {"param_groups", "scalars"} <= set(meta):
            raise CheckpointError(f"{ckpt}: state.json's 'optimizer' must be an object with "
                                  "'param_groups' and 'scalars'")
    return Checkpoint(ckpt, tensors, state, recipe_toml)


def checkpoint_problem(ckpt: Path, groups: Iterable[str] = FILES) -> str | None:
    """Why the checkpoint directory ``ckpt`` cannot be used (damaged, or weights that are
    not finite), or None when it is intact."""
    try:
        ck = load_checkpoint(ckpt, groups=groups)
    except CheckpointError as exc:
        return str(exc)
    for name in ("model", "ema", "optimizer"):  # NaN Adam moments poison a resumed run too
        if name in ck.tensors and nonfinite_tensors(ck.tensors[name]):
            what = "optimizer state" if name == "optimizer" else f"{name} weights"
            return f"{ckpt}: its {what} hold NaN or inf"
    return None


def _candidates(root: Path) -> tuple[list[Path], list[str]]:
    """Step directories to try, best first (``latest``'s target, then newest first), and
    the problem with ``latest`` itself, if any."""
    problems, order = [], []
    latest = root / "latest"
    if latest.is_symlink() or latest.exists():
        problem = _link_problem(latest)
        if problem:
            problems.append(f"{latest}: {problem}")
        else:
            order.append(latest.resolve())
    order += [p.resolve() for p in reversed(step_dirs(root)) if p.resolve() not in order]
    return order, problems


def newest_intact(root: Path, groups: Iterable[str] = FILES) -> tuple[Path | None, list[str]]:
    """The checkpoint a run would resume from (``latest`` when intact, else the newest
    intact step directory) and the sentences about what was skipped as damaged."""
    order, problems = _candidates(root)
    for ckpt in order:
        problem = checkpoint_problem(ckpt, groups)
        if problem is None:
            return ckpt, problems
        problems.append(problem)
    return None, problems


def describe_intact(root: Path) -> str:
    """A true clause about what a run can restart from, checked file by file."""
    found, _ = newest_intact(root)
    if found is None:
        return "no intact checkpoint exists"
    return (f"the newest good checkpoint ({found.name}) is intact (its checksums and finite "
            "weights were checked)")


def _is_run_level(path: Path) -> bool:
    """A run directory, a checkpoints directory or a ``latest`` link (not one step)."""
    return path.name == "latest" or (path / "checkpoints").is_dir() or \
        (path.is_dir() and not (path / "state.json").exists() and
         ((path / "latest").is_symlink() or bool(step_dirs(path))))


def load_intact(path: str | Path, map_location: str | torch.device = "cpu",
                groups: Iterable[str] = FILES,
                warn: Callable[[str], None] | None = None) -> Checkpoint:
    """Load the checkpoint ``path`` names; for a run, its checkpoints directory or
    ``latest``, fall back to the newest intact checkpoint when ``latest`` is damaged,
    dangling or loops, telling ``warn`` (stderr by default) which one was skipped."""
    path = Path(path)
    warn = warn or (lambda message: print(f"difftk: {message}", file=sys.stderr))
    groups = list(groups)
    if not _is_run_level(path) or not (path.exists() or path.is_symlink()):
        try:
            return load_checkpoint(path, map_location, groups)
        except CheckpointError as exc:
            parent = path.resolve().parent if path.exists() else None
            others = [p.name for p in step_dirs(parent) if p.resolve() != path.resolve()
                      and checkpoint_problem(p, groups) is None] if parent else []
            if others:
                raise CheckpointError(f"{exc}; intact checkpoints beside it: "
                                      f"{', '.join(others)}") from None
            raise
    root = path.parent if path.name == "latest" else \
        path / "checkpoints" if (path / "checkpoints").is_dir() else path
    for attempt in range(READ_ATTEMPTS):
        # a training run may prune a checkpoint while it is read: a checkpoint that vanished
        # is not damaged, so read again rather than report it (or fall back past it)
        before = {p.name for p in step_dirs(root)}
        found, problems = newest_intact(root, groups)
        last = attempt == READ_ATTEMPTS - 1
        if before - {p.name for p in step_dirs(root)} and not last:
            continue
        if found is None:
            if not problems:
                raise CheckpointError(f"{path}: holds no checkpoint")
            raise CheckpointError(f"{root}: no intact checkpoint ({'; '.join(problems)})")
        try:
            ck = load_checkpoint(found, map_location, groups)
        except CheckpointError:
            if found.exists() or last:
                raise
            continue
        if problems:
            warn(f"{'; '.join(problems)}; using {found.name}, the newest intact checkpoint")
        return ck
    raise AssertionError("unreachable")


def require_finite(ck: Checkpoint, group: str) -> None:
    """Refuse weights that hold NaN or inf (sampling them only yields NaN)."""
    bad = nonfinite_tensors(ck.tensors[group])
    if bad:
        raise CheckpointError(f"{ck.path}: {len(bad)} of {len(ck.tensors[group])} {group} "
                              f"tensors hold NaN or inf (e.g. {bad[0]}); refusing to use them")
