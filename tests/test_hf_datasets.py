"""The hf_datasets data set: local Hugging Face data sets, read like the other image sets."""

import numpy as np
import pytest
import torch

from difftk.errors import DataError

datasets = pytest.importorskip("datasets")


def _pixels(n=20, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def _save(path, pixels, labels, test=None):
    from PIL import Image

    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["cat", "dog", "owl"])})

    def table(p, y):
        return datasets.Dataset.from_dict(
            {"image": [Image.fromarray(a) for a in p], "label": list(y)}, features=features)

    if test is None:
        table(pixels, labels).save_to_disk(str(path))
    else:
        datasets.DatasetDict({"train": table(pixels, labels),
                              "test": table(*test)}).save_to_disk(str(path))
    return path


def _part(registry, **params):
    return registry.get("datasets", "hf_datasets").cls(**params)


def test_saved_dataset_matches_the_npz_set_of_the_same_pixels(registry, tmp_path):
    pixels, labels = _pixels(), np.arange(20) % 3
    path = _save(tmp_path / "hf", pixels, labels)
    np.savez(tmp_path / "same.npz", images=pixels, labels=labels)
    params = {"mean": [0.5, 0.4, 0.3], "std": [0.5, 0.2, 0.25], "heldout": 4, "split_seed": 3}
    got = _part(registry, path=str(path), **params).load()
    want = registry.get("datasets", "npz").cls(path=str(tmp_path / "same.npz"),
                                              labels="labels", **params).load()
    # PNG is lossless and 8x8 images keep their size: the same tensors, split and labels
    assert torch.equal(got.train, want.train) and torch.equal(got.heldout, want.heldout)
    assert torch.equal(got.train_labels, want.train_labels)
    assert torch.equal(got.heldout_labels, want.heldout_labels)
    assert got.num_classes == 3 and got.class_names == ["cat", "dog", "owl"]
    assert got.train.shape == (16, 3, 8, 8)


def test_test_split_is_held_out_and_resolution_crops(registry, tmp_path):
    pixels = _pixels(12, size=16)
    test = (_pixels(5, size=16, seed=1), np.zeros(5, dtype=int))
    path = _save(tmp_path / "hf", pixels, np.arange(12) % 3, test)
    bundle = _part(registry, path=str(path), resolution=8, channels=1, limit=10).load()
    assert bundle.train.shape == (10, 1, 8, 8) and bundle.heldout.shape == (5, 1, 8, 8)
    assert bundle.heldout_labels.tolist() == [0] * 5
    assert bundle.train.min() >= -1 and bundle.train.max() <= 1


def test_parquet_file(registry, tmp_path):
    pixels = _pixels(10)
    _save(tmp_path / "hf", pixels, np.arange(10) % 3)
    datasets.load_from_disk(str(tmp_path / "hf")).to_parquet(str(tmp_path / "d.parquet"))
    bundle = _part(registry, path=str(tmp_path / "d.parquet"), heldout=2, split_seed=0).load()
    want = torch.from_numpy(pixels.transpose(0, 3, 1, 2)).float() / 127.5 - 1
    keep = np.sort(np.random.default_rng(0).permutation(10)[2:])
    assert torch.allclose(bundle.train, want[keep])


def test_a_hub_name_is_refused_in_one_sentence(registry):
    with pytest.raises(DataError, match="does not download data sets") as info:
        _part(registry, path="uoft-cs/cifar10").load()
    assert "\n" not in str(info.value)


def test_missing_split_and_column(registry, tmp_path):
    path = _save(tmp_path / "hf", _pixels(6), np.arange(6) % 3)
    with pytest.raises(DataError, match='no split "validation"'):
        _part(registry, path=str(path), split="validation").load()
    with pytest.raises(DataError, match="no image column"):
        _part(registry, path=str(path), image_column="pixels").load()


def test_a_large_set_is_read_by_row_and_equals_the_decoded_one(registry, tmp_path):
    from difftk.data.items import is_lazy

    pixels, labels = _pixels(30), np.arange(30) % 3
    path = _save(tmp_path / "hf", pixels, labels)
    memory = _part(registry, path=str(path), heldout=5).load()
    lazy = _part(registry, path=str(path), heldout=5, pipeline="loader").load()
    assert is_lazy(lazy.train) and not is_lazy(memory.train)
    assert torch.equal(lazy.train[:], memory.train) and torch.equal(lazy.heldout[:], memory.heldout)
    assert torch.equal(lazy.train_labels, memory.train_labels)
    index = torch.tensor([7, 2, 2, 19])
    assert torch.equal(lazy.train[index], memory.train[index])
