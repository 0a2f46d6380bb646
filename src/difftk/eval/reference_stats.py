"""Reference statistics: the feature Gaussians of a real set, in the files other tools read.

- ``.npz`` with ``mu`` and ``sigma`` (Inception pool, 2048-d): what pytorch-fid's
  ``--save-stats`` and EDM's ``fid.py ref`` write and read, and the published CIFAR-10 /
  ImageNet files of both. difftk adds ``mu_s`` / ``sigma_s`` (sFID's spatial features, the
  ADM evaluator's names), ``dinov2_mu`` / ``dinov2_sigma`` (FD-DINOv2), ``pool_features`` (a
  subset of the pool features, for precision/recall) and ``difftk`` (a JSON line: how the
  features were made), which those tools ignore.
- The ADM evaluator's reference batches (``VIRTUAL_imagenet256_labeled.npz``, used by DiT
  and SiT): ``arr_0`` (uint8 images, N x H x W x C) with ``mu``, ``sigma``, ``mu_s``,
  ``sigma_s``. Their statistics are read as they are; the images give precision/recall.
- ``.pkl`` as EDM2's ``calculate_metrics.py ref`` writes it: ``{"fid": {"mu", "sigma"},
  "fd_dinov2": {"mu", "sigma"}}``. Read by an unpickler that builds numpy arrays and dicts
  only (a pickle can name any code; this one runs none).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from difftk.errors import DifftkError

NPZ_KEYS = {"fid": ("mu", "sigma"), "sfid": ("mu_s", "sigma_s"),
            "fd_dinov2": ("dinov2_mu", "dinov2_sigma")}
PKL_KEYS = {"fid": "fid", "fd_dinov2": "fd_dinov2"}


@dataclass
class ReferenceStats:
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    pool_features: np.ndarray | None = None  # precision/recall's reference points
    images: np.ndarray | None = None  # an ADM reference batch's arr_0 (N, H, W, C) uint8
    meta: dict = field(default_factory=dict)  # how the features were made (difftk files)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays, scalars, dtypes and plain containers; refuses anything else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array")


def _checked(path: Path, name: str, mu, sigma) -> tuple[np.ndarray, np.ndarray]:
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
        raise DifftkError(f"{path}: the {name} statistics have shapes {mu.shape} and "
                          f"{sigma.shape}, not a mean [D] and a covariance [D, D]")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise DifftkError(f"{path}: the {name} statistics hold non-finite values")
    return mu, sigma


def read_reference(path: Path) -> ReferenceStats:
    """The statistics in an .npz (pytorch-fid, EDM, ADM, difftk) or EDM2 .pkl file."""
    path = Path(path)
    if not path.is_file():
        raise DifftkError(f"{path}: no such reference statistics file")
    ref = ReferenceStats()
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as f:
                data = _ArraysOnly(f).load()
            if not isinstance(data, dict):
                raise DifftkError(f"{path}: holds a {type(data).__name__}, not EDM2's "
                                  "dict of statistics")
            for metric, key in PKL_KEYS.items():
                if isinstance(data.get(key), dict) and {"mu", "sigma"} <= set(data[key]):
                    ref.stats[metric] = _checked(path, metric, data[key]["mu"], data[key]["sigma"])
            return ref
        with np.load(path, allow_pickle=False) as f:
            names = set(f.files)
            for metric, (mu, sigma) in NPZ_KEYS.items():
                if {mu, sigma} <= names:
                    ref.stats[metric] = _checked(path, metric, f[mu], f[sigma])
            if "pool_features" in names:
                ref.pool_features = np.asarray(f["pool_features"])
            if "arr_0" in names:
                images = f["arr_0"]
                if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
                    raise DifftkError(f"{path}: arr_0 is {images.dtype} {images.shape}, not an "
                                      "ADM batch of uint8 images N x H x W x C")
                ref.images = images
            if "difftk" in names:
                ref.meta = json.loads(str(f["difftk"]))
    except DifftkError:
        raise
    except Exception as exc:  # truncated, not a zip, a pickle of something else
        raise DifftkError(f"{path}: not a readable statistics file ({type(exc).__name__}: "
                          f"{exc})") from None
    if not ref.stats and ref.images is None and ref.pool_features is None:
        raise DifftkError(f"{path}: holds no statistics (mu and sigma) and no images (arr_0)")
    return ref


def write_reference(path: Path, ref: ReferenceStats) -> None:
    """``path``: .npz (pytorch-fid / EDM keys plus difftk's) or .pkl (EDM2's layout)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if path.suffix == ".pkl":
        data = {PKL_KEYS[m]: {"mu": mu, "sigma": sigma} for m, (mu, sigma) in ref.stats.items()
                if m in PKL_KEYS}
        with open(tmp, "wb") as f:
            pickle.dump(data, f)
    else:
        arrays = {}
        for metric, (mu, sigma) in ref.stats.items():
            arrays[NPZ_KEYS[metric][0]], arrays[NPZ_KEYS[metric][1]] = mu, sigma
        if ref.pool_features is not None:
            arrays["pool_features"] = ref.pool_features.astype(np.float32)
        arrays["difftk"] = np.array(json.dumps(ref.meta))
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    tmp.replace(path)
