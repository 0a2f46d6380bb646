"""The features paper metrics read, extracted from 0-255 images in batches over processes.

A set of images (a folder, a zip, a packed set, an .npz, or samples as they are drawn) goes
through the networks the requested metrics need, one batch at a time; what is kept is the
feature Gaussians (eval/feature_moments.py, summed over processes) and, only where a metric
needs the points themselves, the pool features (precision/recall) or the logits (the
Inception Score), gathered in index order. Process r of W reads items r N / W .. (r+1) N / W.

Metrics: ``fid`` (Inception pool, 2048), ``sfid`` (spatial, 2023), ``is`` (logits),
``prdc`` (pool features), ``fd_dinov2`` (DINOv2 class token, 1024).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from difftk.data.packed import file_sha256
from difftk.errors import DifftkError
from difftk.eval.feature_moments import FeatureMoments, rows_in_index_order

METRICS = ("fid", "sfid", "is", "prdc", "fd_dinov2")
INCEPTION_METRICS = {"fid", "sfid", "is", "prdc"}
MOMENT_DIMS = {"fid": 2048, "sfid": 2023, "fd_dinov2": 1024}


def parse_metrics(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise DifftkError(f'unknown metric "{unknown[0] if unknown else text}" (metrics: '
                          f'{", ".join(METRICS)})')
    return list(dict.fromkeys(names))


@dataclass
class FeatureNetworks:
    """The networks the metrics need, on one device, and how each identifies itself."""

    inception: nn.Module | None
    convention: str
    dinov2: nn.Module | None
    device: torch.device
    identity: dict = field(default_factory=dict)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        from difftk.eval.inception_input import network_input

        images = images.to(self.device)
        out: dict[str, Tensor] = {}
        if self.inception is not None:
            o = self.inception(network_input(images, self.convention))
            out.update(fid=o.pool, prdc=o.pool, sfid=o.spatial, logits=o.logits)
        if self.dinov2 is not None:
            out["fd_dinov2"] = self.dinov2(images)
        return {k: v.float().cpu() for k, v in out.items()}


def load_networks(metrics: list[str], device: torch.device, weights: Path | None = None,
                  dinov2: Path | None = None, convention: str = "tf") -> FeatureNetworks:
    """The Inception network from ``weights`` (pytorch-fid's pt_inception file) when a metric
    needs it, and DINOv2 from the folder ``dinov2`` for fd_dinov2."""
    from difftk.eval.features import load_feature_network
    from difftk.eval.inception_input import CONVENTIONS

    if convention not in CONVENTIONS:
        raise DifftkError(f'--inception-input must be one of {", ".join(CONVENTIONS)}, '
                          f'not "{convention}"')
    inception = dino = None
    identity: dict = {"convention": convention}
    if INCEPTION_METRICS & set(metrics):
        if weights is None:
            needing = sorted(INCEPTION_METRICS & set(metrics))
            raise DifftkError(f"{', '.join(needing)} need{'s' if len(needing) == 1 else ''} "
                              "the Inception weights: --weights "
                              "pt_inception-2015-12-05-6726825d.pth (see docs/evaluation.md)")
        inception = load_feature_network("inception", Path(weights)).to(device)
        identity["inception"] = file_sha256(Path(weights))[:16]
    if "fd_dinov2" in metrics:
        if dinov2 is None:
            raise DifftkError("fd_dinov2 needs a saved DINOv2 model: --dinov2 FOLDER "
                              "(see docs/evaluation.md)")
        from difftk.eval.dinov2 import load_dinov2

        dino = load_dinov2(Path(dinov2)).to(device)
        identity["dinov2"] = hashlib.sha256("".join(
            f"{p.name}{p.stat().st_size}{p.stat().st_mtime_ns}"
            for p in sorted(Path(dinov2).iterdir()) if p.is_file()).encode()).hexdigest()[:16]
    return FeatureNetworks(inception, convention, dino, device, identity)


@dataclass
class SetFeatures:
    """What the metrics need of one image set."""

    count: int
    stats: dict[str, tuple[np.ndarray, np.ndarray]]
    pool: Tensor | None = None  # [N, 2048] in index order (prdc)
    logits: Tensor | None = None  # [N, 1008] in index order (is)


class FeatureSink:
    """Takes batches (their indices and uint8 images); ``finish`` sums over processes."""

    def __init__(self, networks: FeatureNetworks, metrics: list[str], keep_pool: int = 0):
        self.networks = networks
        dims = MOMENT_DIMS | ({"fd_dinov2": networks.dinov2.dim} if networks.dinov2 else {})
        self.moments = {m: FeatureMoments(dims[m]) for m in metrics if m in dims}
        self.keep_pool = "prdc" in metrics or keep_pool > 0
        self.keep_logits = "is" in metrics
        self.indices: list[Tensor] = []
        self.pool: list[Tensor] = []
        self.logits: list[Tensor] = []

    def add(self, indices, images: Tensor) -> None:
        features = self.networks(images)
        for name, moments in self.moments.items():
            moments.add(features[name])
        self.indices.append(torch.as_tensor(np.asarray(indices), dtype=torch.long))
        if self.keep_pool:
            self.pool.append(features["prdc"])
        if self.keep_logits:
            self.logits.append(features["logits"])

    def finish(self, runtime) -> SetFeatures:
        stats, count = {}, 0
        for name, moments in self.moments.items():
            total = moments.summed(runtime)
            count = total.count
            stats[name] = total.mu_sigma()
        idx = torch.cat(self.indices) if self.indices else torch.zeros(0, dtype=torch.long)
        def rows(parts: list[Tensor], dim: int) -> Tensor:
            local = torch.cat(parts) if parts else torch.zeros((0, dim))
            return rows_in_index_order(runtime, idx, local)
        pool = rows(self.pool, 2048) if self.keep_pool else None
        logits = rows(self.logits, 1008) if self.keep_logits else None
        if not self.moments:
            count = len(pool if pool is not None else logits)
        return SetFeatures(count, stats, pool, logits)


def my_share(n: int, rank: int, world: int) -> range:
    return range(rank * n // world, (rank + 1) * n // world)


def items_features(items, networks: FeatureNetworks, metrics: list[str], runtime,
                   batch_size: int = 64, keep_pool: int = 0,
                   progress: Callable[[int], None] | None = None) -> SetFeatures:
    """Features of every item of ``items`` (uint8 images [C, H, W]), this process its share."""
    if items.stored_dtype != torch.uint8 or len(items.item_shape) != 3 \
            or items.item_shape[0] not in (1, 3):
        raise DifftkError(f"{items.source or 'the set'}: paper metrics read 0-255 images with "
                          f"1 or 3 channels, and its items are {items.stored_dtype} "
                          f"{tuple(items.item_shape)}")
    sink = FeatureSink(networks, metrics, keep_pool)
    share = my_share(len(items), runtime.rank, runtime.world_size)
    for start in range(share.start, share.stop, batch_size):
        idx = np.arange(start, min(start + batch_size, share.stop))
        sink.add(idx, items.read(idx))
        if progress is not None:
            progress(len(idx))
    return sink.finish(runtime)


def cache_key(items, networks: FeatureNetworks, metrics: list[str], keep_pool: int) -> str:
    return hashlib.sha256(json.dumps([items.digest(), sorted(metrics), networks.identity,
                                      keep_pool]).encode()).hexdigest()[:32]


def save_features(path: Path, f: SetFeatures) -> None:
    arrays = {"count": np.array(f.count)}
    for name, (mu, sigma) in f.stats.items():
        arrays[f"{name}_mu"], arrays[f"{name}_sigma"] = mu, sigma
    if f.pool is not None:
        arrays["pool"] = f.pool.numpy()
    if f.logits is not None:
        arrays["logits"] = f.logits.numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as out:
        np.savez(out, **arrays)
    tmp.replace(path)


def load_features(path: Path) -> SetFeatures | None:
    try:
        with np.load(path) as z:
            stats = {k[:-3]: (z[k], z[k[:-3] + "_sigma"]) for k in z.files if k.endswith("_mu")}
            return SetFeatures(int(z["count"]), stats,
                               torch.from_numpy(z["pool"]) if "pool" in z.files else None,
                               torch.from_numpy(z["logits"]) if "logits" in z.files else None)
    except Exception:  # a damaged cache file is recomputed, never trusted
        return None


def cached_items_features(items, networks, metrics, runtime, cache: Path | None,
                          batch_size: int = 64, keep_pool: int = 0,
                          progress=None) -> tuple[SetFeatures, bool]:
    """items_features, read from / written to ``cache`` (a folder; None: no cache), keyed by
    the files (names, sizes, times or checksums), the networks and the metrics.
    Returns (features, whether they came from the cache)."""
    path = None
    if cache is not None:
        path = Path(cache) / f"{cache_key(items, networks, metrics, keep_pool)}.npz"
        found = load_features(path) if path.is_file() else None
        if runtime.all_true(found is not None):
            return found, True
    features = items_features(items, networks, metrics, runtime, batch_size, keep_pool, progress)
    if path is not None and runtime.is_main:
        try:
            save_features(path, features)
        except OSError:
            pass  # a cache that cannot be written costs a recomputation next time, no more
    return features, False
