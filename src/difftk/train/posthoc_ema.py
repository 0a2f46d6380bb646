"""Post-hoc EMA: averages of weights formed after training from saved snapshots.

Two ways (seed 001 §11.2; Karras et al. 2024, "Analyzing and improving the training
dynamics of diffusion models", §3 and appendix C):

- ``beta``: theta = sum_i w_i theta_i with w_i proportional to beta^(N - i) over the raw
  weights of the N snapshots, oldest first.
- ``sigma_rel``: least squares in the space of averaging profiles. Each stored power
  EMA at step t with exponent gamma is the profile p(tau) = (gamma + 1) tau^gamma / t^(gamma+1)
  on [0, t]; with A_ij = <p_i, p_j> and b_i = <p_i, q> for the wanted profile q, the
  coefficients x = A^-1 b (normalised to sum 1) give sum_i x_i theta_i, the stored
  weights' combination whose profile is closest to q (EDM2 ``solve_posthoc_coefficients``;
  the mathematics is in ``difftk.optim.power_ema``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from difftk.errors import CheckpointError, DifftkError
from difftk.optim.power_ema import SIGMA_REL_MAX, sigma_rel_to_gamma, solve_power_coefficients

SNAPSHOTS = "snapshots"


@dataclass(frozen=True)
class Snapshot:
    step: int
    path: Path
    meta: dict

    def file(self, profile: str) -> Path:
        return self.path / f"{profile}.safetensors"


def list_snapshots(run_dir: str | Path, strict: bool = False) -> list[Snapshot]:
    """The intact snapshots of a run, oldest first: each verified as checkpoints are (its
    record's and its files' checksums, finite tensors). A damaged one is left out with a
    sentence on stderr naming it, or, with ``strict``, refused."""
    import sys

    from difftk.run.checkpoint import snapshot_problem

    root = Path(run_dir) / SNAPSHOTS
    if not Path(run_dir).is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    out = []
    for d in sorted(root.glob("[0-9]*")) if root.is_dir() else []:
        try:
            meta = json.loads((d / "snapshot.json").read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            meta = None  # an incomplete snapshot is never renamed into place
        problem = "snapshot.json is missing or unreadable" if not isinstance(meta, dict) \
            else snapshot_problem(d, meta)
        if problem is not None:
            if strict:
                raise CheckpointError(f"{d}: {problem}")
            print(f"difftk: warning: left out the EMA snapshot {d}: {problem}",
                  file=sys.stderr)
            continue
        out.append(Snapshot(meta["step"], d, meta))
    if not out:
        raise CheckpointError(f"{run_dir}: holds no EMA snapshots (train with "
                              f"ema.snapshot_every=N to save them)")
    return sorted(out, key=lambda s: s.step)


def beta_weights(n: int, beta: float) -> np.ndarray:
    """w_i = beta^(N - i) / sum_j beta^(N - j), i = 1..N (seed 001 §11.2)."""
    w = beta ** np.arange(n - 1, -1, -1, dtype=np.float64)
    return w / w.sum()


def combine(files: list[Path], coefficients: np.ndarray) -> dict[str, torch.Tensor]:
    """sum_i c_i theta_i over floating tensors, accumulated in float64; others from the last."""
    out: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for file, c in zip(files, coefficients, strict=True):
        try:
            state = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{file}: is damaged or truncated ({exc})") from None
        for key, value in state.items():
            if value.is_floating_point():
                dtypes[key] = value.dtype
                out[key] = out.get(key, 0) + float(c) * value.double()
            else:
                out[key] = value
    return {k: v.to(dtypes[k]) if k in dtypes else v for k, v in out.items()}


def step_beta_weights(steps: list[int], beta: float) -> np.ndarray:
    """w_i = beta^(s_N - s_i) / sum: a per-step decay beta applied to snapshots taken at steps
    s_1 < ... < s_N (the per-step EMA seen at the snapshots; any spacing)."""
    gaps = steps[-1] - np.asarray(steps, dtype=np.float64)
    w = np.exp(gaps * np.log(beta)) if beta > 0 else (gaps == 0).astype(np.float64)
    return w / w.sum()


def posthoc_beta(run_dir, beta: float, strict: bool = False, per_step: bool = False
                 ) -> tuple[dict[str, torch.Tensor], dict]:
    """The beta^(N - i) average of the raw weights of every intact snapshot (seed 001 §11.2,
    per snapshot), or with ``per_step`` the beta^(s_N - s_i) one (beta a per-step decay)."""
    snaps = [s for s in list_snapshots(run_dir, strict) if s.file("model").is_file()]
    if not snaps:
        raise CheckpointError(f"{run_dir}: the snapshots hold no raw weights (model.safetensors)")
    w = (step_beta_weights([s.step for s in snaps], beta) if per_step
         else beta_weights(len(snaps), beta))
    state = combine([s.file("model") for s in snaps], w)
    return state, {"method": "beta_per_step" if per_step else "beta", "beta": beta,
                   "steps": [s.step for s in snaps],
                   "coefficients": w.tolist()}


def posthoc_sigma_rel(run_dir, sigma_rel: float, step: int | None = None, strict: bool = False
                      ) -> tuple[dict[str, torch.Tensor], dict]:
    """Reconstruct the power EMA of width ``sigma_rel`` at ``step`` (default: the last snapshot)."""
    if not 0 < sigma_rel < SIGMA_REL_MAX:
        raise DifftkError(f"--sigma-rel must lie in (0, {SIGMA_REL_MAX:.4f}), got {sigma_rel}")
    snaps = list_snapshots(run_dir, strict)
    step = snaps[-1].step if step is None else step
    if step not in {s.step for s in snaps}:
        raise DifftkError(f"no snapshot at step {step} (snapshots: "
                          f"{', '.join(str(s.step) for s in snaps)})")
    files, times, gammas = [], [], []
    for s in snaps:
        if not 0 < s.step <= step:
            continue
        for name, info in s.meta.get("profiles", {}).items():
            if "gamma" in info and s.file(name).is_file():
                files.append(s.file(name))
                times.append(s.step)
                gammas.append(info["gamma"])
    if not files:
        raise CheckpointError(f"{run_dir}: the snapshots hold no power-EMA profiles; "
                              f"reconstruction by sigma_rel needs a run with ema.name = \"power\"")
    x = solve_power_coefficients(times, gammas, step, sigma_rel_to_gamma(sigma_rel))
    state = combine(files, x)
    return state, {"method": "sigma_rel", "sigma_rel": sigma_rel, "step": step,
                   "inputs": [f"{t}:{f.stem}" for t, f in zip(times, files, strict=True)],
                   "coefficients": x.tolist()}
