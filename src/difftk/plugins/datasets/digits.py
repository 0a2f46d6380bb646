"""scikit-learn's bundled 8x8 digits: 1,797 images with labels, no download needed."""

from __future__ import annotations

from pydantic import Field

from difftk.data.images import Decoded, ImageDataset, RawImages
from difftk.hookspecs import hookimpl


class Digits(ImageDataset):
    """The 8x8 handwritten digits bundled with scikit-learn, scaled to [-1, 1]."""

    name = "digits"
    heldout: int = Field(297, ge=1, lt=1797, description="images held out (fixed split)")

    def decode(self) -> RawImages:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        # Pixel values are counts 0..16 (the UCI data's 4x4-block sums), so white is 16.
        decoded = Decoded(bunch.images[:, None], bunch.target, "sklearn.datasets.load_digits")
        return RawImages(decoded, white=16.0, num_classes=10,
                         class_names=[str(d) for d in range(10)])


@hookimpl
def register_datasets(register):
    register(Digits)
