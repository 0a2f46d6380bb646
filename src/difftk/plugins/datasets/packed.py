"""A packed data set (``difftk data pack``): memory-mapped uint8 shards read by index.

The manifest's test split (when the pack has one) is the held-out split unless ``heldout``
is set; otherwise ``heldout`` items (default: a tenth, at most 10,000, as a researcher
holding out an ImageNet-sized set expects) are held out by a seeded permutation. The
training set's statistics come from the manifest (its moments, minus the held-out items'
when those were taken from the training shards): ``sigma_data = "data"`` and ``difftk data
stats`` read nothing but the manifest and the held-out items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from difftk.data.dataset import DataBundle
from difftk.data.images import Decoded, ImageDataset, RawImages, scaled
from difftk.data.items import FlipPairedItems, Items
from difftk.data.latent_values import ChannelAffine, PosteriorDraw
from difftk.data.packed import PackedItems, read_manifest
from difftk.data.split import heldout_split
from difftk.data.stats import data_moments, stats_from_moments, unmerge_moments
from difftk.errors import DataError
from difftk.hookspecs import hookimpl

DEFAULT_HELDOUT_CAP = 10_000


class Packed(ImageDataset):
    """A folder written by ``difftk data pack``: uint8 shards, a manifest, read lazily."""

    name = "packed"
    path: str = Field(description="the folder `difftk data pack` wrote (it holds manifest.json)")
    split: str = Field("train", min_length=1, description="split of the pack to train on")

    def _open(self) -> tuple[Path, PackedItems, PackedItems | None]:
        root = Path(self.path).expanduser()
        if not root.exists():
            raise DataError(f"{root}: no such directory; pack a data set into it with "
                            "`difftk data pack SOURCE -o DIR`")
        manifest = read_manifest(root)
        if self.split not in manifest.splits:
            raise DataError(f"{root}: has no split \"{self.split}\" (splits: "
                            f"{', '.join(manifest.splits)}); set data.split")
        if manifest.kind != "image" or len(manifest.item_shape) != 3:
            raise DataError(f"{root}: holds {manifest.kind} items of shape "
                            f"{manifest.item_shape}, not images [C, H, W]")
        train = PackedItems(root, manifest, self.split)
        test_name = next((s for s in ("test", "validation", "val") if s in manifest.splits
                          and s != self.split), None)
        test = PackedItems(root, manifest, test_name) if test_name else None
        return root, train, test

    def decode(self) -> RawImages:
        _, train, test = self._open()
        return self._raw(train, test)

    @staticmethod
    def _raw(train: PackedItems, test: PackedItems | None) -> RawImages:
        m = train.manifest
        raw_test = Decoded(test, test.labels(), test.source) if test is not None else None
        return RawImages(Decoded(train, train.labels(), train.source), raw_test,
                         white=m.white or 255.0, num_classes=m.num_classes or None,
                         class_names=m.class_names)

    def load(self) -> DataBundle:
        _, train, test = self._open()  # the shards are checked once
        if train.manifest.codec is not None:
            return self._latent_bundle(train, test)
        raw = self._raw(train, test)
        spec = self
        if self.heldout is None and raw.test is None:
            spec = self.model_copy(update={
                "heldout": min(DEFAULT_HELDOUT_CAP, max(1, len(raw.train.items) // 10))})
        bundle = ImageDataset.bundle(spec, raw)
        bundle.known_stats = spec._training_stats(raw, bundle)
        return bundle

    def _training_stats(self, raw: RawImages, bundle: DataBundle):
        """The training split's statistics from the manifest's moments (exact), or None when
        the training items are not the whole split minus a known part."""
        items = raw.train.items
        moments = items.record.moments
        if moments is None or self.limit is not None:
            return None
        scaling = self.scaling(raw.white, items.item_shape[0], items.source)
        # stored values -> training values: an affine map per channel
        n, mean, m2 = moments.count, np.array(moments.mean), np.array(moments.m2)
        white = scaling.white
        s = np.broadcast_to(np.asarray(scaling.std, np.float64), mean.shape)
        c = np.broadcast_to(np.asarray(scaling.mean, np.float64), mean.shape)
        mean, m2 = (mean / white - c) / s, m2 / (white * s) ** 2
        if raw.test is None or self.heldout is not None:  # held-out items came out of the split
            hn, hmean, hm2, _, _ = data_moments(bundle.heldout)
            n, mean, m2 = unmerge_moments(n, mean, m2, hn, hmean.numpy(), hm2.numpy())
        lo = float(min((moments.minimum / white - c) / s))  # the range of the whole split
        hi = float(max((moments.maximum / white - c) / s))
        return stats_from_moments(n, mean, m2, lo, hi)


    def _latent_bundle(self, train: PackedItems, test: PackedItems | None) -> DataBundle:
        """A latent set (``difftk data encode``): stored latents mapped to training values by
        the codec's rule, both flips where they were encoded, the codec's record attached."""
        m = train.manifest
        codec = m.codec
        flipped_name = f"{self.split}_flipped"
        items: Items = train
        if self.hflip and flipped_name not in m.splits:
            raise DataError(f"{train.root}: a latent set encoded without --flips cannot be "
                            "flipped (a flip of latents is not the latents of the flipped "
                            "image); encode it again with --flips or set data.hflip = false")
        if self.hflip:
            items = FlipPairedItems(train, PackedItems(train.root, m, flipped_name))
        labels = train.labels()
        if self.heldout is None and test is not None:
            held, held_labels = test, test.labels()
        else:
            count = self.heldout or min(DEFAULT_HELDOUT_CAP, max(1, len(train) // 10))
            keep, out = heldout_split(len(train), count, self.split_seed, train.source, "items")
            held, items = train.subset(out), items.subset(keep)
            held_labels = labels[out] if labels is not None else None
            labels = labels[keep] if labels is not None else None
        if self.limit is not None and self.limit < len(items):
            items = items.subset(np.arange(self.limit))
            labels = labels[: self.limit] if labels is not None else None
        scaling = latent_scaling(codec, self.split_seed + 7919)
        lazy = self.hflip or isinstance(scaling, PosteriorDraw) or self.keep_lazy(train)
        x_train = scaled(items, scaling, lazy)
        x_held = scaled(held, scaling, lazy)
        y = torch.from_numpy(labels) if labels is not None else None
        y_held = torch.from_numpy(held_labels) if held_labels is not None else None
        mean = np.asarray(codec.get("latent_mean") or [0.0] * m.item_shape[0])
        std = np.asarray(codec.get("latent_std") or [1.0] * m.item_shape[0])
        affine = scaling.affine if isinstance(scaling, PosteriorDraw) else scaling
        if affine is not None:  # moments of the raw latents -> of the training values
            a = np.asarray(affine.scale)
            mean, std = mean * a + np.asarray(affine.bias), std * np.abs(a)
        n = len(items) * int(np.prod(x_train.shape[2:]))
        stats = stats_from_moments(n, mean, std**2 * max(n - 1, 1), float("nan"), float("nan"))
        return DataBundle(
            source=train.source, train=x_train, heldout=x_held, train_labels=y,
            heldout_labels=y_held if y is not None else None,
            num_classes=m.num_classes if y is not None else 0, kind="image",
            class_names=list(m.class_names), hflip=self.hflip, pipeline=self.pipeline,
            workers=self.workers, known_stats=stats, encoded_with=dict(codec))


def latent_scaling(codec: dict, seed: int):
    """Stored latents -> training values, by the codec's record (latents/diffusers_vae.py)."""
    sample, normalize = codec.get("sample", "mean"), codec.get("normalize", "scale")
    channels = int(codec.get("latent_channels", 0)) or len(codec.get("latent_mean") or [])
    if normalize == "channel":
        std = np.asarray(codec["latent_std"], np.float64)
        scale = float(codec.get("final_std", 0.5)) / std
        affine = ChannelAffine(scale.tolist(), (-np.asarray(codec["latent_mean"]) * scale).tolist())
    elif sample == "batch":
        sf, shift = float(codec.get("scaling_factor", 1.0)), float(codec.get("shift_factor", 0.0))
        affine = ChannelAffine([sf] * channels, [-shift * sf] * channels)
    else:
        affine = None  # stored already scaled
    return PosteriorDraw(affine or ChannelAffine([1.0] * channels, [0.0] * channels), seed) \
        if sample == "batch" else affine


@hookimpl
def register_datasets(register):
    register(Packed)
