"""Contract of augmentation pipelines ([augment], data/augment.py): seeded draws, shape-keeping
and per-item transforms, labels of the declared length. Runs on tiny CPU batches."""

from __future__ import annotations

import torch

BATCHES = ((6, 1, 8, 8), (6, 3, 8, 8))


def check_augmentation_seeded_per_item_and_labelled(augmentation) -> None:
    """draw(n, generator) gives [n, k] rows fixed by the generator's seed; apply keeps the
    images' shape, is finite, gives [n, label_dim()] labels (None when 0), and treats each
    item by its own row alone (so a slice of the batch augments as the whole batch would,
    whichever process trains on it)."""
    for shape in BATCHES:
        images = torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
        draws = augmentation.draw(shape[0], torch.Generator().manual_seed(0), "cpu")
        again = augmentation.draw(shape[0], torch.Generator().manual_seed(0), "cpu")
        assert draws.ndim == 2 and draws.shape[0] == shape[0], \
            f"draw(n={shape[0]}) gave shape {tuple(draws.shape)}, expected [n, k]"
        assert torch.equal(draws, again), "two draws from the same seed differ"
        out, labels = augmentation.apply(images, draws)
        assert out.shape == images.shape, f"images {shape} came back as {tuple(out.shape)}"
        assert torch.isfinite(out).all(), "non-finite augmented images"
        dim = augmentation.label_dim()
        if dim == 0:
            assert labels is None, "label_dim() is 0 but apply returned labels"
        else:
            assert labels is not None and labels.shape == (shape[0], dim), \
                f"labels {None if labels is None else tuple(labels.shape)}, expected " \
                f"({shape[0]}, {dim})"
            assert torch.isfinite(labels).all(), "non-finite augmentation labels"
        part, part_labels = augmentation.apply(images[2:5], draws[2:5])
        assert torch.allclose(part, out[2:5], atol=1e-5), \
            "items 2..4 augment differently alone than in their batch"
        if dim:
            assert torch.allclose(part_labels, labels[2:5], atol=1e-6), \
                "items 2..4 get different labels alone than in their batch"


CHECKS = {"augmentations": [check_augmentation_seeded_per_item_and_labelled]}
