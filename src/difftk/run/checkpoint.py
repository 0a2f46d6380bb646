"""Checkpoints: safetensors only (loading one cannot run code), crash-safe and verified.

A checkpoint is a directory ``checkpoints/<step>/`` holding model, ema, optimizer and rng
weights (safetensors), the resolved ``recipe.toml`` and ``state.json``; ``state.json``
records the sha256 of every other file, checked whenever a file is loaded. ``latest`` is
a relative symbolic link to the newest step directory.

Every write leaves the previous good state readable at every instant; nothing is
deleted first:

- a step directory is written whole into ``.<step>.tmp`` (each file and the directory
  fsynced), then renamed into place and the parent fsynced. An existing directory of the
  same step is kept when it is intact (a checkpoint is never written into); a damaged one
  is swapped with the new one in a single ``renameat2(RENAME_EXCHANGE)`` where the kernel
  offers it, else moved aside just before the rename;
- ``latest`` is replaced by renaming a new link over it, then the parent is fsynced;
- pruned directories are first renamed to ``.<step>.trash``, so a crash never leaves a
  half-deleted checkpoint under a step's name;
- weights that are not finite are never saved as a checkpoint.

Reading a run (``load_intact``) takes ``latest`` when it is intact and otherwise falls
back to the newest intact step directory, with a sentence naming what was damaged.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as encode_safetensors
from safetensors.torch import save_file

from difftk.errors import CheckpointError, TrainingDivergedError
from difftk.run.state_record import sealed, state_digest, state_problem

FILES = ("model", "ema", "optimizer", "rng")
# The random streams a resumed run restores (RunState._rng_tensors); torch_cuda is optional.
RNG_STREAMS = ("torch_cpu", "batches.drawn")
# Reads of a run's newest checkpoint retried when training pruned what was being read.
READ_ATTEMPTS = 5
# state.json fields that a checkpoint cannot be read without (run/state_record.py checks
# their types and bounds).
REQUIRED_STATE = ("step", "spec", "files")


class NonFiniteWeightsError(TrainingDivergedError):
    """The weights about to be saved hold NaN or inf; they are not written as a checkpoint."""

    exit_code = 3


# ------------------------------------------------------------------ file system steps
# Every change on disk goes through these few functions, so that tests can stop the
# process between any two of them (tests/crash_harness.py) or make one fail (disk full).

def _write_file(path: Path, data: bytes) -> None:
    """Write, flush and fsync one new file."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename(src: Path, dst: Path) -> None:
    os.replace(src, dst)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _symlink(target: str, link: Path) -> None:
    os.symlink(target, link)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries in one step (Linux renameat2 RENAME_EXCHANGE).

    False where the C library or the file system does not offer it.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a))


# ------------------------------------------------------------------ optimizer state

def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split an optimizer state dict into flat tensors and JSON metadata."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.contiguous()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_state(tensors: dict, meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in tensors.items():
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for flat, value in meta["scalars"].items():
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


# ------------------------------------------------------------------ writing

def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _encode(groups: dict[str, dict[str, torch.Tensor]]) -> dict[str, bytes]:
    return {f"{name}.safetensors": encode_safetensors(
        {k: v.detach().contiguous().cpu() for k, v in group.items()}) for name, group in groups.items()}


def _commit_dir(root: Path, name: str, payload: dict[str, bytes]) -> Path:
    """Write ``root/name/`` holding ``payload`` so that it appears whole or not at all."""
    root.mkdir(parents=True, exist_ok=True)
    final, tmp = root / name, root / f".{name}.tmp"
    if tmp.exists():
        _remove_tree(tmp)
    tmp.mkdir()
    for filename, data in payload.items():
        _write_file(tmp / filename, data)
    _fsync(tmp)
    if final.exists() and not final.is_symlink():
        if not _exchange(tmp, final):  # no atomic swap here: move the old one aside first
            _rename(final, root / f".{name}.old")
            _rename(tmp, final)
            tmp = root / f".{name}.old"
        _fsync(root)
        _remove_tree(tmp)  # now the old directory
    else:
        _rename(tmp, final)
    _fsync(root)
    return final


def write_step_dir(root: Path, step: int, groups: dict[str, dict[str, torch.Tensor]],
                   texts: dict[str, str]) -> Path:
    """Write ``root/<step>/`` atomically: one safetensors file per group plus text files,
    each fsynced in a temporary directory that is then renamed into place (an existing
    directory of that step is swapped out, never deleted first)."""
    payload = _encode(groups) | {name: text.encode() for name, text in texts.items()}
    return _commit_dir(root, f"{step:08d}", payload)


def nonfinite_tensors(group: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors that hold NaN or inf."""
    return [k for k, v in group.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def _point_latest(root: Path, final: Path) -> None:
    link_tmp = root / ".latest.tmp"
    if link_tmp.is_symlink() or link_tmp.exists():
        link_tmp.unlink()
    _symlink(final.name, link_tmp)
    _rename(link_tmp, root / "latest")
    _fsync(root)


def _prune(root: Path, keep_last: int, keep: Iterable[Path]) -> None:
    keep = {p.name for p in keep}
    for old in step_dirs(root)[:-keep_last]:
        if old.name not in keep:
            trash = root / f".{old.name}.trash"
            _rename(old, trash)
            _remove_tree(trash)


def _clear_leftovers(root: Path) -> None:
    """Remove what an interrupted write left: never a committed checkpoint."""
    for leftover in root.glob(".*"):
        if leftover.suffix in (".tmp", ".trash", ".old") and leftover.is_dir() \
                and not leftover.is_symlink():
            _remove_tree(leftover)


def save_checkpoint(root: Path, step: int, tensors: dict[str, dict[str, torch.Tensor]],
                    state: dict[str, Any], recipe_toml: str, keep_last: int) -> Path:
    """Write ``root/<step>/``, point ``latest`` at it and prune to ``keep_last``.

    An intact checkpoint of the same step is kept as it is (a checkpoint is never
    rewritten); non-finite weights raise NonFiniteWeightsError and write nothing.
    """
    bad = {name: nonfinite_tensors(group) for name, group in tensors.items() if name != "rng"}
    bad = {name: keys for name, keys in bad.items() if keys}
    if bad:
        what = ", ".join(f"{name}: {len(keys)} of {len(tensors[name])} tensors"
                         for name, keys in bad.items())
        raise NonFiniteWeightsError(
            f"the weights at step {step} hold NaN or inf ({what}); they were not saved as a "
            f"checkpoint, and {describe_intact(root)}")
    final = root / f"{step:08d}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _clear_leftovers(root)
        if not (final.is_dir() and checkpoint_problem(final) is None):
            payload = _encode(tensors) | {"recipe.toml": recipe_toml.encode()}
            state = state | {"files": {name: _digest(data) for name, data in payload.items()}}
            payload["state.json"] = json.dumps(sealed(state), indent=1).encode()
            _commit_dir(root, final.name, payload)
        _point_latest(root, final)
        _prune(root, keep_last, keep=[final])
    except OSError as exc:
        where = exc.filename or root
        raise CheckpointError(
            f"could not write checkpoint {final.name} ({where}: {exc.strerror or exc}); "
            f"{describe_intact(root)}") from None
    return final


def save_snapshot(root: Path, step: int, groups: dict[str, dict[str, torch.Tensor]],
                  meta: dict[str, Any]) -> Path:
    """Write ``root/<step>/`` with one safetensors file per group and ``snapshot.json``.

    Snapshots feed post-hoc EMA and are never pruned; like checkpoints they are written
    atomically, so a crash leaves no half snapshot.
    """
    payload = _encode(groups)
    meta = sealed(meta | {"files": {name: _digest(data) for name, data in payload.items()}})
    payload["snapshot.json"] = json.dumps(meta, indent=1).encode()
    return _commit_dir(root, f"{step:08d}", payload)


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
        if isinstance(files, dict) and _digest(data) != files[name]:
            return f"{name} is damaged (its checksum does not match snapshot.json)"
        try:
            tensors = load_safetensors(data)
        except (SafetensorError, ValueError, RuntimeError) as exc:
            return f"{name} is damaged or truncated ({exc})"
        bad = nonfinite_tensors(tensors)
        if bad:
            return f"{name}: {len(bad)} of {len(tensors)} tensors hold NaN or inf"
    return None


def save_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """One safetensors file written atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata=metadata)
    _fsync(tmp)
    os.replace(tmp, path)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """A text file replaced in one rename, so a crash leaves the old or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    _write_file(tmp, text.encode())
    _rename(tmp, path)
    return path


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
    if _digest(data) != expected:
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
