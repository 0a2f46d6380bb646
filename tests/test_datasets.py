"""Data sets: each loader on tiny files the tests write, the real Fashion-MNIST files,
scaling, splits, statistics, toy densities, and one-sentence errors that name the file."""

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from difftk.cli import app
from difftk.data import image_files as image_files_module
from difftk.data.stats import data_statistics
from difftk.errors import DataError
from difftk.plugins.datasets.cifar10 import Cifar10
from difftk.plugins.datasets.digits import Digits
from difftk.plugins.datasets.folder import Folder
from difftk.plugins.datasets.idx import FashionMNIST, Idx, read_idx
from difftk.plugins.datasets.npz import Npz
from difftk.plugins.datasets.toy2d import Toy2D

runner = CliRunner()


def one_sentence(exc: BaseException, *words: str) -> str:
    msg = str(exc)
    assert "\n" not in msg and "Traceback" not in msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


def write_idx(path: Path, array: np.ndarray, gz: bool) -> Path:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">f4"): 0x0D}[array.dtype]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape) \
        + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def mnist_dir(tmp_path: Path, gz: bool, n_train=12, n_test=4) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n_train + n_test, 5, 4), dtype=np.uint8)
    x[0] = 0
    x[1] = 255
    y = (np.arange(n_train + n_test) % 3).astype(np.uint8)
    ext = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", x[:n_train], gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", y[:n_train], gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", x[n_train:], gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", y[n_train:], gz)
    return tmp_path, x, y


# ---------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_gzipped_and_raw_files_with_labels_and_test_split(tmp_path, gz):
    root, x, y = mnist_dir(tmp_path, gz)
    b = Idx(path=str(root)).load()
    assert b.train.shape == (12, 1, 5, 4) and b.heldout.shape == (4, 1, 5, 4)
    assert torch.equal(b.train[0], -torch.ones(1, 5, 4)) and torch.equal(b.train[1], torch.ones(1, 5, 4))
    expected = torch.from_numpy(x[:12]).float().div(255).mul(2).sub(1).unsqueeze(1)
    assert torch.allclose(b.train, expected, atol=1e-6)
    assert b.train_labels.tolist() == y[:12].tolist() and b.heldout_labels.tolist() == y[12:].tolist()
    assert b.num_classes == 3 and b.kind == "image"


def test_idx_header_and_float_payload_round_trip(tmp_path):
    a = (np.arange(24).reshape(2, 3, 4) / 24).astype(">f4")
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", a, gz=False)), a)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_idx_file_is_one_sentence_naming_it(tmp_path, gz):
    root, _, _ = mnist_dir(tmp_path, gz)
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    data = (root / name).read_bytes()
    (root / name).write_bytes(data[: len(data) - 30])
    with pytest.raises(DataError) as exc:
        Idx(path=str(root)).load()
    one_sentence(exc.value, name, "truncated")


def test_not_an_idx_file_and_label_count_mismatch(tmp_path):
    root, x, y = mnist_dir(tmp_path, gz=False)
    write_idx(root / "train-labels-idx1-ubyte", y[:11], gz=False)
    with pytest.raises(DataError) as exc:
        Idx(path=str(root)).load()
    one_sentence(exc.value, "train-labels-idx1-ubyte", "11 labels", "12")
    (root / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04 not idx at all")
    with pytest.raises(DataError) as exc:
        Idx(path=str(root)).load()
    one_sentence(exc.value, "train-images-idx3-ubyte", "not an IDX file")


def test_missing_paths_are_one_sentence(tmp_path):
    with pytest.raises(DataError) as exc:
        Idx(path=str(tmp_path / "nowhere")).load()
    one_sentence(exc.value, "nowhere", "no such")
    with pytest.raises(DataError) as exc:
        FashionMNIST(path=str(tmp_path / "fm")).load()
    one_sentence(exc.value, "fm", "apt-get install dataset-fashion-mnist",
                 "github.com/zalandoresearch/fashion-mnist")
    with pytest.raises(DataError) as exc:
        Cifar10(path=str(tmp_path)).load()
    one_sentence(exc.value, "data_batch_1", "cifar-10-python.tar.gz")


def test_real_fashion_mnist_files_match_the_published_statistics():
    """Debian's dataset-fashion-mnist package (.ci/run installs it). Xiao et al.'s files:
    60,000 + 10,000 images; pixel mean 0.2860 and std 0.3530 in [0, 1], so sigma_data in
    [-1, 1] is 2 x 0.3530."""
    b = FashionMNIST().load()
    assert b.train.shape == (60000, 1, 28, 28) and b.heldout.shape == (10000, 1, 28, 28)
    assert b.train_labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert torch.bincount(b.train_labels).tolist() == [6000] * 10
    assert b.class_names[9] == "Ankle boot" and b.num_classes == 10
    s = b.stats
    assert (s.mean + 1) / 2 == pytest.approx(0.2860, abs=5e-5)
    assert s.std / 2 == pytest.approx(0.3530, abs=5e-5)
    assert b.sigma_data == pytest.approx(0.7060, abs=1e-4)


# ---------------------------------------------------------------- npz / npy
def test_npz_keras_layout_channels_last_with_test_arrays(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, (10, 6, 6, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (3, 6, 6, 3), dtype=np.uint8)
    y_train, y_test = np.arange(10) % 4, np.arange(3)
    np.savez(tmp_path / "set.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    b = Npz(path=str(tmp_path / "set.npz"), labels="y_train", heldout_images="x_test",
            heldout_labels="y_test").load()
    assert b.train.shape == (10, 3, 6, 6) and b.heldout.shape == (3, 3, 6, 6)
    assert b.train[2, 1, 4, 5] == pytest.approx(x_train[2, 4, 5, 1] / 127.5 - 1, abs=1e-6)
    assert b.train_labels.tolist() == y_train.tolist() and b.num_classes == 4


def test_npy_with_labels_file_as_seed_004_reshaped_and_float(tmp_path):
    """Seed 004: MNIST_data.npy (flat rows, values 0..255 as float) + MNIST_labels.npy."""
    rng = np.random.default_rng(2)
    data = rng.integers(0, 256, (20, 16)).astype(np.float32)
    np.save(tmp_path / "MNIST_data.npy", data)
    np.save(tmp_path / "MNIST_labels.npy", (np.arange(20) % 10).astype(np.int32))
    b = Npz(path=str(tmp_path / "MNIST_data.npy"), labels="MNIST_labels.npy", shape=[1, 4, 4],
            heldout=5).load()
    assert b.train.shape == (15, 1, 4, 4) and b.heldout.shape == (5, 1, 4, 4)
    everything = torch.cat([b.train, b.heldout]).flatten(1)
    assert sorted(everything.sum(1).tolist()) == pytest.approx(
        sorted((data / 127.5 - 1).sum(1).tolist()), abs=1e-4)
    assert sorted(torch.cat([b.train_labels, b.heldout_labels]).tolist()) == sorted(
        (np.arange(20) % 10).tolist())


def test_npz_vectors_and_errors(tmp_path):
    pts = np.random.default_rng(3).standard_normal((50, 2)).astype(np.float32) * 3
    np.savez(tmp_path / "pts.npz", points=pts, other=pts[:2])
    b = Npz(path=str(tmp_path / "pts.npz"), images_key="points", heldout=10).load()
    assert b.kind == "vector" and b.train.shape == (40, 2)
    assert torch.allclose(torch.cat([b.train, b.heldout]).sort(0).values,
                          torch.from_numpy(pts).sort(0).values)  # unscaled
    with pytest.raises(DataError) as exc:
        Npz(path=str(tmp_path / "pts.npz")).load()
    one_sentence(exc.value, "pts.npz", "points, other")
    np.save(tmp_path / "amb.npy", np.zeros((4, 3, 5, 3), np.uint8))
    with pytest.raises(DataError) as exc:
        Npz(path=str(tmp_path / "amb.npy")).load()
    one_sentence(exc.value, "amb.npy", "data.channels")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError) as exc:
        Npz(path=str(tmp_path / "bad.npz")).load()
    one_sentence(exc.value, "bad.npz")


# ---------------------------------------------------------------- folder
def make_folder(root: Path) -> Path:
    """Two classes; a wide image whose centre square is white and whose sides are black."""
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
    wide = np.zeros((4, 8, 3), np.uint8)
    wide[:, 2:6] = 255
    Image.fromarray(wide).save(root / "cat" / "wide.png")
    Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(root / "cat" / "white.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "dog" / "black.jpg", quality=95)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "dog" / "small.png")
    return root


def test_folder_classes_centre_crop_and_cache(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs")
    spec = Folder(path=str(root), resolution=4, heldout=1, cache_dir=str(tmp_path / "cache"))
    images, labels, classes = spec.decoded()
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 0, 1, 1]
    assert images.shape == (4, 3, 4, 4)
    assert (images[0] == 255).all()  # the centre 4x4 of the wide image is its white middle
    assert (images[1] == 255).all() and (images[3] == 0).all()
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    grey = Folder(path=str(root), resolution=4, channels=1, cache=False, center_crop=False,
                  heldout=1).load()
    assert grey.train.shape[1] == 1

    def refuse(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(image_files_module, "decode_image", refuse)
    again, labels2, _ = spec.decoded()
    assert np.array_equal(again, images) and np.array_equal(labels2, labels)
    b = spec.load()
    assert b.train.shape == (3, 3, 4, 4) and b.num_classes == 2 and b.class_names == classes


def test_folder_with_an_unreadable_image_names_it(tmp_path):
    root = make_folder(tmp_path / "imgs")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError) as exc:
        Folder(path=str(root), resolution=4, cache=False).load()
    one_sentence(exc.value, "broken.png", "not a readable")


# ---------------------------------------------------------------- CIFAR-10
def write_cifar(root: Path, per_batch: int = 4) -> np.ndarray:
    """The real layout: protocol-2 pickles of dicts with bytes keys, uint8 [N, 3072] rows
    (red plane, green plane, blue plane), labels as a list; batches.meta with label_names."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(4)
    all_rows = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        all_rows.append(rows)
        batch = {b"batch_label": name.encode(), b"labels": [i % 10 for i in range(per_batch)],
                 b"data": rows, b"filenames": [f"{i}.png".encode() for i in range(per_batch)]}
        with (root / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    with (root / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in names], b"num_vis": 3072}, f, protocol=2)
    return np.concatenate(all_rows)


def test_cifar10_pickle_batches_layout_and_given_mean_std(tmp_path):
    rows = write_cifar(tmp_path / "cifar-10-batches-py")
    b = Cifar10(path=str(tmp_path)).load()  # the parent directory is accepted too
    assert b.train.shape == (20, 3, 32, 32) and b.heldout.shape == (4, 3, 32, 32)
    # Pixel (row 5, column 7) of image 2, green channel: byte 1024 + 5 * 32 + 7 of its row.
    assert b.train[2, 1, 5, 7] == pytest.approx(rows[2, 1024 + 5 * 32 + 7] / 127.5 - 1, abs=1e-6)
    assert b.class_names[0] == "airplane" and b.num_classes == 10
    assert b.train_labels.tolist() == [0, 1, 2, 3] * 5
    mean, std = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
    n = Cifar10(path=str(tmp_path / "cifar-10-batches-py"), mean=mean, std=std).load()
    assert n.train[2, 2, 0, 0] == pytest.approx((rows[2, 2048] / 255 - mean[2]) / std[2], abs=1e-5)


def test_cifar10_refuses_code_in_a_pickle_and_names_the_file(tmp_path):
    write_cifar(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    with (tmp_path / "c" / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": Evil()}, f, protocol=2)
    with pytest.raises(DataError) as exc:
        Cifar10(path=str(tmp_path / "c")).load()
    one_sentence(exc.value, "data_batch_3", "refuses")


# ---------------------------------------------------------------- common parameters
def test_heldout_limit_and_flip_flag_from_the_common_parameters(tmp_path):
    root, _, _ = mnist_dir(tmp_path, gz=False)
    b = Idx(path=str(root), heldout=3, limit=5, hflip=True, split_seed=1).load()
    assert b.train.shape[0] == 5 and b.heldout.shape[0] == 3 and b.hflip
    with pytest.raises(DataError) as exc:
        Idx(path=str(root), heldout=12).load()
    one_sentence(exc.value, "cannot hold out 12 of 12")
    with pytest.raises(DataError) as exc:
        Idx(path=str(root), mean=[0.5, 0.5, 0.5]).load()
    one_sentence(exc.value, "data.mean has 3 values", "1 channel")


def test_digits_fixed_split_and_range():
    b = Digits().load()
    assert b.train.shape == (1500, 1, 8, 8) and b.heldout.shape == (297, 1, 8, 8)
    assert float(b.train.min()) == -1.0 and float(b.train.max()) == 1.0
    assert torch.equal(Digits().load().heldout, b.heldout)


def test_statistics_match_the_closed_form_in_chunks():
    x = torch.randn(37, 3, 5, 5, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + 3
    s = data_statistics(x.float(), chunk=4)
    assert s.std == pytest.approx(float(x.float().double().std()), rel=1e-9)
    assert s.mean == pytest.approx(float(x.float().double().mean()), rel=1e-9)
    per = x.float().double().transpose(0, 1).reshape(3, -1)
    assert s.channel_std == pytest.approx(per.std(1).tolist(), rel=1e-9)
    assert s.minimum == float(x.float().min()) and s.count == 37 * 25


# ---------------------------------------------------------------- toy 2-D densities
GRID = torch.linspace(-4.5, 4.5, 91, dtype=torch.float64)  # spacing 0.1
POINTS = torch.stack(torch.meshgrid(GRID, GRID, indexing="ij"), -1).reshape(-1, 2)


@pytest.mark.parametrize("shape", ["swiss_roll", "moons", "eight_gaussians", "checkerboard",
                                   "mixture"])
def test_toy_density_is_normalised_and_matches_its_sampler(shape):
    toy = Toy2D(shape=shape, noise=0.15)
    p = toy.log_prob(POINTS).exp()
    h = float(GRID[1] - GRID[0])
    assert float(p.sum()) * h * h == pytest.approx(1.0, abs=2e-3)
    # P(box) from the density against the share of 40,000 samples in the box (3.5 sigma).
    x = toy.sample(40000, seed=5).double()
    # Grid points 0.0..1.4 x -0.5..0.9 are the midpoints of the cells of [-0.05, 1.45) x [-0.55, 0.95).
    c = POINTS + 1e-9
    inside = (c[:, 0] >= 0) & (c[:, 0] < 1.45) & (c[:, 1] >= -0.5) & (c[:, 1] < 0.95)
    prob = float(p[inside].sum()) * h * h
    share = float(((x[:, 0] >= -0.05) & (x[:, 0] < 1.45) & (x[:, 1] >= -0.55)
                   & (x[:, 1] < 0.95)).double().mean())
    assert abs(share - prob) < 3.5 * (prob * (1 - prob) / 40000) ** 0.5 + 2e-3


def test_toy_closed_forms_and_the_curve_without_noise():
    eight = Toy2D(shape="eight_gaussians")
    at_centre = eight.log_prob(torch.tensor([[2.0, 0.0]]))
    assert float(at_centre) == pytest.approx(np.log(1 / 8 / (2 * np.pi * 0.01)), abs=1e-9)
    board = Toy2D(shape="checkerboard")
    assert float(board.log_prob(torch.tensor([[0.5, 0.5]])).exp()) == pytest.approx(1 / 8)
    assert float(board.log_prob(torch.tensor([[0.5, -0.5]])).exp()) == 0.0
    with pytest.raises(DataError) as exc:
        Toy2D(shape="moons").log_prob(torch.zeros(1, 2))
    one_sentence(exc.value, "data.noise")


# ---------------------------------------------------------------- difftk data stats
def test_data_stats_command_prints_sigma_data_and_errors_name_the_file(root, tmp_path):
    result = runner.invoke(app, ["data", "stats", str(root / "recipes/edm.toml"), "--json"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.output)
    assert report["sigma_data"] == pytest.approx(Digits().load().sigma_data, rel=1e-12)
    assert report["train"] == 1500 and report["shape"] == [1, 8, 8]
    result = runner.invoke(app, ["data", "stats", str(root / "recipes/edm.toml"), "--set",
                                 'data.name="idx"', "--set", f'data.path="{tmp_path}/none"'])
    assert result.exit_code == 1
    assert f"{tmp_path}/none" in result.output and "Traceback" not in result.output


def test_data_stats_of_a_latent_recipe_gives_the_latents_sigma_data(root):
    import json

    result = runner.invoke(app, ["data", "stats", str(root / "recipes/edm.toml"), "--json",
                                 "--set", 'latents.name="dct"', "--set", "latents.keep=0"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    pixels, latents = report, report["latents"]
    assert latents["name"] == "dct" and latents["shape"] == [1, 8, 8]
    # an orthonormal DCT keeps each image's energy: mean^2 + std^2 over all values agrees,
    # while the std itself moves (the image mean gathers into one coefficient)
    assert latents["sigma_data"] ** 2 + latents["mean"] ** 2 == pytest.approx(
        pixels["sigma_data"] ** 2 + pixels["mean"] ** 2, rel=1e-4)
    assert abs(latents["sigma_data"] - pixels["sigma_data"]) > 0.05
