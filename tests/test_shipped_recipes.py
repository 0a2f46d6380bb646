"""Every shipped recipe trains: two optimizer steps of each, as shipped (its network, data
set, target, loss and sampler), with only the batch, the step count and the logging made
small (and the GPU-sized CIFAR-10 networks narrowed), so that none of them rots. The
CIFAR-10 recipes read a tiny CIFAR-10 directory written here in the format of the published
python pickles."""

import pickle
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

ROOT = Path(__file__).parents[1]
# every recipe, less the [latents]-only files that difftk data encode takes (--latents)
SHIPPED = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "recipes").rglob("*.toml")
                 if set(tomllib.loads(p.read_text())) != {"latents"})


def _fake_cifar10(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, 8))}
        with (folder / name).open("wb") as f:
            pickle.dump(batch, f)
    return folder


def _tiny_pack(folder, side, classes):
    """12 training and 4 test images of the recipe's size, packed as difftk data pack does."""
    from difftk.data.items import ArrayItems
    from difftk.data.pack import finish, pack_split
    from difftk.data.packed import Manifest

    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 12), ("test", 4)):
        images = rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8)
        labels = rng.integers(0, classes, n)
        splits[split] = pack_split(ArrayItems(images), labels, folder, split, 8, workers=1)
    finish(folder, Manifest(item_shape=[3, side, side], dtype="uint8", white=255,
                            num_classes=classes, splits=splits))
    return folder


def _tiny_vae(folder):
    """A randomly initialised AutoencoderKL with Stable Diffusion's factor 8 and 4 channels."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8),
                  layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=256
                  ).save_pretrained(str(folder))
    return folder


def _tiny_latent_set(tmp_path, recipe_path):
    """12 + 4 random 256x256 images, packed and encoded with the recipe's [latents]."""
    from typer.testing import CliRunner

    from difftk.cli import app

    vae = _tiny_vae(tmp_path / "vae")
    pixels = _tiny_pack(tmp_path / "pixels", 256, 1000)
    table = dict(tomllib.loads(recipe_path.read_text())["latents"], path=str(vae))
    spec = tmp_path / "latents.toml"
    spec.write_text("[latents]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"')
                                              for k, v in table.items()))
    flips = ["--flips"] if tomllib.loads(recipe_path.read_text())["data"].get("hflip") else []
    out = tmp_path / "latent_set"
    res = CliRunner().invoke(app, ["data", "encode", str(pixels), "--latents", str(spec), "-o",
                                   str(out), "--device", "cpu", *flips])
    assert res.exit_code == 0, res.output
    return vae, out


def _is_autoencoder(path):
    return "autoencoder" in tomllib.loads((ROOT / path).read_text())


def _train_autoencoder(path, out_dir):
    """Two steps of a train-autoencoder recipe; the weights file it writes."""
    from difftk.latents.autoencoder_recipe import load_autoencoder_recipe
    from difftk.train.autoencoder_training import train_autoencoder

    # Width 8: a diffusion recipe on its latents encodes the whole data set once (70,000
    # Fashion-MNIST images), which at the shipped width costs the suite minutes.
    r = load_autoencoder_recipe(ROOT / path, [f'run.out_dir="{out_dir}"', "autoencoder.steps=2",
                                              "autoencoder.batch_size=4", "autoencoder.width=8"])
    result = train_autoencoder(r, torch.device("cpu"), False)
    assert result.weights.is_file()
    return result.weights


@pytest.mark.parametrize("path", [p for p in SHIPPED if _is_autoencoder(p)])
def test_autoencoder_recipe_trains_two_steps(tmp_path, path):
    _train_autoencoder(path, tmp_path)


@pytest.mark.parametrize("path", [p for p in SHIPPED if not _is_autoencoder(p)])
def test_recipe_trains_two_steps(root, tmp_path, path):
    recipe = load_recipe(root / path, warn=False)
    sets = [f'run.out_dir="{tmp_path}"', 'run.name="r"', "train.steps=2",
            "train.time_limit=0", "log.every=1", "log.val_every=0", "log.eval_every=0",
            "log.sample_every=0", "log.checkpoint_every=0", "log.num_samples=2",
            'run.device="cpu"', 'precision.name="fp32"']
    accumulation = recipe.train.grad_accumulation
    sets.append(f"train.batch_size={4 * accumulation}")
    if "steps" in type(recipe.parts["sampler"]).model_fields:
        sets.append("sampler.steps=2")
    if recipe.parts["data"].name == "cifar10":
        sets.append(f'data.path="{_fake_cifar10(tmp_path / "cifar")}"')
        # The GPU-sized U-Nets keep their layout at 16 base channels: writing the checkpoint
        # of 35-56M parameters (weights, EMA, Adam moments) would cost the suite a minute.
        sets.append("model.channels=16")
    latents = recipe.parts.get("latents")
    if recipe.parts["data"].name == "packed" and latents.name == "diffusers_vae":
        # a random-weights AutoencoderKL (diffusers' own constructor) and a tiny ImageNet-256
        # latent set encoded with it by difftk data encode, as the recipe's header says
        vae, latent_set = _tiny_latent_set(tmp_path, ROOT / path)
        sets += [f'data.path="{latent_set}"', f'latents.path="{vae}"']
        if recipe.parts["model"].name == "dit":  # the paper's layout, narrowed
            sets += ["model.hidden_size=64", "model.depth=2", "model.num_heads=2"]
        else:
            sets.append("model.channels=16")
    elif recipe.parts["data"].name == "packed":  # a tiny pack of the recipe's image size
        side, classes = (64, 1000) if "imagenet64" in path else (32, 10)
        sets.append(f'data.path="{_tiny_pack(tmp_path / "pack", side, classes)}"')
        # The GPU-sized U-Nets keep their layout at 16 base channels: writing the checkpoint
        # of 35-56M parameters (weights, EMA, Adam moments) would cost the suite a minute.
        sets.append("model.channels=16")
    if latents is not None and getattr(latents, "weights", None):
        # The autoencoder it names is trained by the shipped autoencoder recipe of its data set.
        source = next(p for p in SHIPPED if _is_autoencoder(p)
                      and Path(latents.weights).parent.name in (ROOT / p).read_text())
        sets.append(f'latents.weights="{_train_autoencoder(source, tmp_path / "ae")}"')
    trainer = Trainer(load_recipe(root / path, sets, warn=False), make_runtime("cpu"),
                      progress=False)
    grid = trainer.fit()
    assert trainer.step == 2
    assert grid is not None and grid.is_file()
