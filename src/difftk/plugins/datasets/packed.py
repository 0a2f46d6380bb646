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
from pydantic import Field

from difftk.data.dataset import DataBundle
from difftk.data.images import Decoded, ImageDataset, RawImages
from difftk.data.packed import PackedItems, read_manifest
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
        root, train, test = self._open()
        m = train.manifest
        raw_test = Decoded(test, test.labels(), test.source) if test is not None else None
        return RawImages(Decoded(train, train.labels(), train.source), raw_test,
                         white=m.white or 255.0, num_classes=m.num_classes or None,
                         class_names=m.class_names)

    def load(self) -> DataBundle:
        raw = self.decode()
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


@hookimpl
def register_datasets(register):
    register(Packed)
