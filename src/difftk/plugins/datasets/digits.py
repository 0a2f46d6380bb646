"""scikit-learn's bundled 8x8 digits: 1,797 images with labels, no download needed."""

from __future__ import annotations

import torch
from pydantic import Field

from difftk.data.dataset import DataBundle, Dataset
from difftk.hookspecs import hookimpl


class Digits(Dataset):
    """The 8x8 handwritten digits bundled with scikit-learn, scaled to [-1, 1]."""

    name = "digits"
    heldout: int = Field(297, ge=1, lt=1797, description="images held out (fixed split)")
    split_seed: int = Field(0, description="seed of the fixed train / held-out permutation")

    def load(self) -> DataBundle:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.from_numpy(bunch.images).float().div(16.0).mul(2).sub(1).unsqueeze(1)
        y = torch.from_numpy(bunch.target).long()
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.split_seed))
        test, train = perm[: self.heldout], perm[self.heldout:]
        return DataBundle(train=x[train], heldout=x[test], train_labels=y[train],
                          heldout_labels=y[test], num_classes=10, kind="image")


@hookimpl
def register_datasets(register):
    register(Digits)
