"""Every bad input found by an adversarial pass ends in one sentence, not a traceback.

Recipes (files, --set, bounds that keep `validate` from passing what `train` cannot run)
and data (decompression bombs, empty arrays, NaN, constant images, pickles). Each test is
the one that would have caught its finding.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from plugin_packages import run_cli

from difftk.errors import DataError, RecipeError
from difftk.recipe import load_recipe, recipe_from_text

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "recipes/toy2d.toml"


def refused(overrides: list[str], *words: str, recipe: Path = TOY) -> str:
    """The recipe with these --set items must be refused, naming each word."""
    with pytest.raises(RecipeError) as exc:
        load_recipe(recipe, overrides, warn=False)
    msg = str(exc.value)
    assert "Traceback" not in msg
    for word in words:
        assert word in msg, (word, msg)
    return msg


# ------------------------------------------------------------------ recipe files
def test_a_recipe_that_is_not_utf8_is_one_sentence(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[run]\nname = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(RecipeError, match=r"is not UTF-8 text \(byte \d+ is 0xe9\)"):
        load_recipe(path)


def test_deeply_nested_toml_is_one_line_not_a_recursion_traceback(tmp_path):
    path = tmp_path / "deep.toml"
    path.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    out = run_cli(tmp_path, "validate", str(path))
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {path}: nests arrays or tables too deeply to read"


def test_a_recipe_that_cannot_be_read_is_one_sentence(tmp_path):
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "dir.toml")


# ------------------------------------------------------------------ --set
def test_set_into_a_value_that_is_not_a_table():
    refused(["run.name.x=1"], "run.name: is a string, not a table",
            "--set run.name.x cannot set a field inside it")


@pytest.mark.parametrize("item", ["train.steps=1\n2", "run.name=a\nb = 2", "run.name=a\rb"])
def test_set_values_are_one_line(item):
    refused([item], "holds a newline or control character")


@pytest.mark.parametrize("item, words", [
    ("x=nan", ['"x=nan" is not of the form section.field=value']),
    ("noise_sampling.P_mean=nan", ["noise_sampling.P_mean: must be a finite number"]),
    ("optimizer.lr=inf", ["optimizer.lr: must be a finite number"]),
    ("train.time_limit=-inf", ["train.time_limit"]),
    (".steps=1", ["is not of the form"]),
    ("train..steps=1", ["is not of the form"]),
])
def test_nan_inf_and_malformed_keys_are_refused(item, words):
    refused([item], *words)


def test_inf_stays_allowed_where_it_means_no_limit():
    recipe = load_recipe(ROOT / "recipes/edm.toml", ["sampler.S_tmax=inf"], warn=False)
    assert recipe.parts["sampler"].S_tmax == float("inf")
    assert recipe_from_text(recipe.to_toml()).parts["sampler"].S_tmax == float("inf")


# ------------------------------------------------------------------ bounds: validate == runnable
def test_huge_schedule_T_is_refused_quickly_without_building_its_table():
    start = time.perf_counter()
    refused(['schedule.name="linear"', "schedule.T=50000000"], "schedule.T",
            "less than or equal to 100000", "at most 100,000")
    assert time.perf_counter() - start < 5


def test_a_number_too_big_for_64_bits_is_a_sentence_not_an_overflow():
    msg = refused(['schedule.name="linear"', f"schedule.T={2**70}"], "schedule.T")
    assert "Overflow" not in msg and "long long" not in msg


@pytest.mark.parametrize("seed", [-2, -1, 2**62, 2**64, 2**70])
def test_seeds_outside_what_torch_accepts_are_refused(seed):
    refused([f"run.seed={seed}"], "run.seed", "64-bit")


@pytest.mark.parametrize("seed", [0, 2**62 - 1])
def test_seeds_at_the_bounds_run(seed):
    assert load_recipe(TOY, [f"run.seed={seed}"], warn=False).run.seed == seed


@pytest.mark.parametrize("overrides, field", [
    (["sampler.steps=100000000"], "sampler.steps"),
    (['model.name="unet"', "model.channels=100000000"], "model.channels"),
    (["model.depth=100000000"], "model.depth"),
    (["model.width=100000000"], "model.width"),
    (["log.num_samples=100000000"], "log.num_samples"),
    (["train.batch_size=100000000000"], "train.batch_size"),
    (['model.name="dit"', "model.depth=100000"], "model.depth"),
    (['model.name="unet"', "model.channel_mult=[1, 100000]"], "model.channel_mult.1"),
])
def test_enormous_sizes_are_refused_at_validation(overrides, field):
    refused(overrides, field, "less than or equal to")


def test_optimizer_betas_must_be_decay_rates():
    refused(["optimizer.betas=[2, 3]"], "optimizer.betas.0", "optimizer.betas.1", "less than 1")
    refused(["optimizer.betas=[-0.1, 0.9]"], "optimizer.betas.0")


@pytest.mark.parametrize("name, words", [
    ("a\x00b", ["NUL"]),
    ("x" * 256, ["longer than 255 bytes"]),
    ("é" * 128, ["longer than 255 bytes"]),  # 256 bytes in UTF-8
    ("/tmp/elsewhere", ["one directory name"]),
    ("../outside", ["one directory name"]),
    ("a/b", ["one directory name"]),
    ("a\\b", ["one directory name"]),
    ("..", ["one directory name"]),
    (".", ["one directory name"]),
])
def test_run_name_is_one_path_component(name, words):
    with pytest.raises(RecipeError) as exc:
        recipe_from_text(_with_run_name(name))
    for word in words:
        assert word in str(exc.value), str(exc.value)


def test_good_run_names_pass():
    for name in ["toy2d", "run-1.v2", "é" * 127, "x" * 255]:
        assert recipe_from_text(_with_run_name(name)).run.name == name


@pytest.mark.parametrize("device", ["meta", "mps", "vulkan", "cuda:x", "cpu:0 ", ""])
def test_devices_difftk_cannot_train_on_are_refused(device):
    refused([f'run.device="{device}"'], "run.device", '"cuda:N"')


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_devices_difftk_trains_on_pass(device):
    assert load_recipe(TOY, [f'run.device="{device}"'], warn=False).run.device == device


def test_missing_section_uses_the_right_article():
    text = TOY.read_text().replace('[model]\nname = "mlp"\nwidth = 128\ndepth = 3\n', "")
    with pytest.raises(RecipeError, match="naming an architecture"):
        recipe_from_text(text)


def test_values_in_messages_are_cut_short():
    msg = refused([f'train.steps="{"x" * 5000}"'], "train.steps")
    assert len(msg) < 400


def _toml_string(value: str) -> str:
    import json

    return json.dumps(value)  # a JSON string is a TOML basic string


def _with_run_name(name: str) -> str:
    return TOY.read_text().replace('name = "toy2d"\nseed = 0',
                                   f"name = {_toml_string(name)}\nseed = 0", 1)


# ------------------------------------------------------------------ data
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with no pixel data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [100_000, 10_000])  # PIL: error above 2x its limit, warning above 1x
def test_an_image_claiming_too_many_pixels_is_refused_by_name(tmp_path, side):
    from difftk.plugins.datasets.folder import Folder

    (tmp_path / "bomb.png").write_bytes(_png_header(side, side))
    with pytest.raises(DataError) as exc:
        Folder(path=str(tmp_path), cache=False).load()
    assert "bomb.png" in str(exc.value) and "decompression bomb" in str(exc.value)


def _npz(tmp_path, **arrays) -> str:
    path = tmp_path / "set.npz"
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("arrays, words", [
    ({}, ["holds no arrays"]),
    ({"images": np.zeros((0, 1, 8, 8), np.uint8)}, ["(0, 1, 8, 8)"]),
    ({"images": np.zeros((10, 1, 0, 8), np.uint8)}, ["(10, 1, 0, 8)"]),
    ({"images": np.zeros((10, 0), np.float32)}, ["(10, 0)", "no values"]),
    ({"x": np.zeros(8, np.float32)}, ["1-D array of 8 values", "[N, 1]"]),
    ({"images": np.zeros((4, 2), np.float32), "labels": np.array([0, 1, 2, 549_000_000_000])},
     ["labels must lie in 0..", "549000000000"]),
    ({"images": np.zeros((4, 2), np.float32), "labels": np.array([0, -1, 2, 3])},
     ["from -1 to 3"]),
])
def test_npz_without_items_or_values_is_refused(tmp_path, arrays, words):
    from difftk.plugins.datasets.npz import Npz

    labels = {"labels": "labels"} if "labels" in arrays else {}
    with pytest.raises(DataError) as exc:
        Npz(path=_npz(tmp_path, **arrays), **labels).load()
    assert "set.npz" in str(exc.value)
    for word in words:
        assert word in str(exc.value), str(exc.value)


@pytest.mark.parametrize("shape", [(40, 1, 4, 5), (40, 2)])
def test_nan_and_inf_in_the_data_are_refused_at_load_with_the_count(tmp_path, shape):
    from difftk.plugins.datasets.npz import Npz

    x = np.random.default_rng(0).random(shape).astype(np.float32)
    first = x[0].reshape(-1)
    first[0], first[-1] = np.nan, np.inf
    with pytest.raises(DataError) as exc:
        Npz(path=_npz(tmp_path, images=x), heldout=39, split_seed=0).load()
    msg = str(exc.value)
    # the first item lands in one of the two splits; its split names the count of each kind
    assert "set.npz" in msg and "1 NaN and 1 infinite values (in 1 of" in msg, msg


def test_nan_count_is_exact(tmp_path):
    from difftk.data.dataset import DataBundle

    train = torch.zeros(5, 3)
    train[1, 0], train[1, 2], train[3, 1] = float("nan"), float("inf"), float("-inf")
    with pytest.raises(DataError, match=r"f\.npz: the training split holds 1 NaN and 2 infinite "
                                        r"values \(in 2 of 5 items\)"):
        DataBundle(train=train, heldout=torch.zeros(1, 3), source="f.npz")


def test_data_stats_never_prints_sigma_data_nan(tmp_path):
    x = np.random.default_rng(0).random((40, 2)).astype(np.float32)
    x[3, 1] = np.nan
    path = _npz(tmp_path, points=x)
    out = run_cli(tmp_path, "data", "stats", str(TOY), "--set", 'data.name="npz"', "--set",
                  f'data.path="{path}"')
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "set.npz" in out.stderr and "1 NaN" in out.stderr and "nan" not in out.stdout


def test_constant_images_with_sigma_data_from_the_data_is_a_sentence(tmp_path):
    from difftk.plugins.datasets.npz import Npz
    from difftk.run.assemble import resolve_sigma_data

    bundle = Npz(path=_npz(tmp_path, images=np.full((20, 1, 5, 5), 7, np.uint8))).load()
    recipe = load_recipe(ROOT / "recipes/edm.toml", warn=False)
    assert recipe.parts["target"].sigma_data == "data"
    with pytest.raises(DataError, match=r'sigma_data = "data" needs data that varies.*set '
                                        "sigma_data to a number"):
        resolve_sigma_data(recipe, bundle.sigma_data)
    fixed = load_recipe(ROOT / "recipes/edm.toml", ["target.sigma_data=0.5",
                                                    "weight.sigma_data=0.5"], warn=False)
    assert resolve_sigma_data(fixed, bundle.sigma_data) is fixed


def test_a_text_file_named_npz_never_suggests_unsafe_pickle_loading(tmp_path):
    from difftk.plugins.datasets.npz import Npz

    path = tmp_path / "notes.npz"
    path.write_text("these are not arrays\n" * 10)
    for target in (path, path.with_suffix(".npy")):
        target.write_text("these are not arrays\n" * 10)
        with pytest.raises(DataError) as exc:
            Npz(path=str(target)).load()
        assert target.name in str(exc.value)
        assert "allow_pickle" not in str(exc.value) and "pickled Python objects" \
            in str(exc.value)


def test_images_and_vectors_share_one_heldout_split(tmp_path):
    """The split of N items depends on (N, heldout, split_seed) only, whatever they are."""
    from difftk.plugins.datasets.npz import Npz

    n = 30
    marks = np.arange(n, dtype=np.float32)
    vectors = Npz(path=_npz(tmp_path, points=np.stack([marks, marks], 1)), split_seed=3).load()
    images = Npz(path=str(tmp_path / "img.npy"), split_seed=3, white=1.0, mean=[0.0],
                 std=[1.0])
    np.save(tmp_path / "img.npy", np.broadcast_to(marks[:, None, None, None], (n, 1, 2, 2))
            .copy())
    images = images.load()
    assert torch.equal(vectors.heldout[:, 0], images.heldout[:, 0, 0, 0])
    assert torch.equal(vectors.train[:, 0], images.train[:, 0, 0, 0])
    assert len(vectors.heldout) == 3


@pytest.mark.parametrize("value, words", [
    ('run.out_dir="runs\\u0000/x"', ["run.out_dir", "NUL byte"]),
    ('run.out_dir="runs/\udcff\udcfe"', ["run.out_dir", "valid UTF-8"]),  # 0xff 0xfe from a shell
])
def test_an_out_dir_no_file_can_be_named_by_is_one_sentence(value, words):
    from conftest import ROOT
    from typer.testing import CliRunner

    from difftk.cli import app

    res = CliRunner().invoke(app, ["validate", str(ROOT / "recipes/toy2d.toml"), "--set",
                                   value])
    assert res.exit_code != 0 and "Traceback" not in res.output
    for word in words:
        assert word in res.output, res.output


def test_a_sparse_safetensors_file_claiming_more_than_memory_is_one_sentence(tmp_path):
    import json
    import os
    import struct

    from typer.testing import CliRunner

    from difftk.cli import app
    from difftk.run.assemble import available_memory

    have = available_memory(torch.device("cpu"))
    claim = (have // 4 + 2**20) * 4  # one float32 tensor just larger than memory
    header = json.dumps({"__metadata__": {"difftk_recipe": "x", "difftk_spec": "{}"},
                         "w": {"dtype": "F32", "shape": [claim // 4],
                               "data_offsets": [0, claim]}}).encode()
    path = tmp_path / "sparse.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
    os.truncate(path, 8 + len(header) + claim)  # sparse: no disk, all the claimed size
    res = CliRunner().invoke(app, ["sample", str(path), "-o", str(tmp_path / "s.png")])
    assert res.exit_code == 1 and "GiB of memory available" in res.output, res.output
    assert "Traceback" not in res.output


def test_a_network_too_large_for_the_machine_is_refused_before_it_is_built(tmp_path):
    from conftest import ROOT
    from typer.testing import CliRunner

    from difftk.cli import app

    # mlp 30000 wide x 10 deep: 9e9 parameters, 36 GB of weights, 180 GB to train
    res = CliRunner().invoke(app, ["train", str(ROOT / "recipes/toy2d.toml"), "--no-progress",
                                   "--set", f'run.out_dir="{tmp_path}"', "--set",
                                   "model.width=30000", "--set", "model.depth=10"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "GiB of weights" in res.output and "memory available" in res.output, res.output


def test_a_recipe_whose_sampler_grid_repeats_a_level_does_not_validate():
    from conftest import ROOT

    with pytest.raises(RecipeError) as exc:  # T = 1: every one of 20 steps lands on one level
        load_recipe(ROOT / "recipes/ddpm.toml", ["schedule.rescale_to_T=1",
                                                  "schedule.beta_end=0.4176",
                                                  'sampler.name="dpmpp_2m"'], warn=False)
    assert "grid repeats or raises the noise level" in str(exc.value)
