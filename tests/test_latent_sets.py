"""Latent diffusion as the field runs it: a diffusers AutoencoderKL (random weights, built by
diffusers itself, saved with save_pretrained: no download), a data set encoded once by
``difftk data encode`` into packed latent shards, and training that refuses latents of
another codec."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from typer.testing import CliRunner

from difftk.cli import app
from difftk.data.batches import LoaderStream
from difftk.data.items import ArrayItems
from difftk.data.pack import finish, pack_split
from difftk.data.packed import Manifest, PackedItems, read_manifest
from difftk.errors import DataError

diffusers = pytest.importorskip("diffusers")
runner = CliRunner()


@pytest.fixture(scope="module")
def vae_and_pixels(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=16)
    vae.save_pretrained(str(root / "vae"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 3, 16, 16), dtype=np.uint8)
    labels = np.arange(20) % 5
    record = pack_split(ArrayItems(images), labels, root / "pixels", "train", 8, workers=1)
    finish(root / "pixels", Manifest(item_shape=[3, 16, 16], dtype="uint8", white=255,
                                     num_classes=5, splits={"train": record}))
    return root, vae.eval(), images


def _spec(root, name, **settings):
    text = "[latents]\nname = \"diffusers_vae\"\n" + f'path = "{root / "vae"}"\n'
    text += "".join(f'{k} = "{v}"\n' if isinstance(v, str) else f"{k} = {v}\n"
                    for k, v in settings.items())
    path = root / f"{name}.toml"
    path.write_text(text)
    return path


def _encode(root, name, *extra, **settings):
    out = root / name
    res = runner.invoke(app, ["data", "encode", str(root / "pixels"), "--latents",
                              str(_spec(root, name, **settings)), "-o", str(out), "--device",
                              "cpu", "--shard-items", "8", *extra])
    assert res.exit_code == 0, res.output
    return out


def _stored(folder, split="train"):
    return PackedItems(folder, read_manifest(folder), split).read(np.arange(20))


def test_encoded_latents_and_their_decoding_equal_diffusers_own(vae_and_pixels):
    root, vae, images = vae_and_pixels
    out = _encode(root, "mean", "--flips", sample="mean")
    x = torch.from_numpy(images).float() / 127.5 - 1
    with torch.no_grad():
        want = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
        flipped = vae.encode(x.flip(-1)).latent_dist.mean * vae.config.scaling_factor
    torch.testing.assert_close(_stored(out), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_stored(out, "train_flipped"), flipped, rtol=1e-5, atol=1e-6)
    manifest = read_manifest(out)
    assert manifest.codec["scaling_factor"] == pytest.approx(0.18215)
    assert manifest.splits["train"].labels is not None
    # decoding as difftk samples do against diffusers' decode of the same latents
    from difftk.plugins.latents import DiffusersVae

    codec = DiffusersVae(path=str(root / "vae")).build(lambda: None)
    with torch.no_grad():
        ours = codec.decode(want)
        theirs = vae.decode(want / vae.config.scaling_factor).sample
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_training_on_a_latent_set_and_refusing_another_codec(vae_and_pixels):
    from difftk.recipe import load_recipe
    from difftk.run.runtime import make_runtime
    from difftk.train.trainer import Trainer

    root, _, _ = vae_and_pixels
    out = _encode(root, "trainable", "--flips", sample="mean")
    base = ["train.steps=2", "train.batch_size=4", "log.every=1", "log.val_every=0",
            "log.sample_every=0", "log.checkpoint_every=0", "log.num_samples=2",
            "sampler.steps=2", 'data.name="packed"', f'data.path="{out}"', "data.heldout=4",
            "data.hflip=true", f'run.out_dir="{root}"', 'run.name="r"']
    good = [*base, 'latents.name="diffusers_vae"', f'latents.path="{root / "vae"}"',
            'latents.sample="mean"']
    trainer = Trainer(load_recipe(ROOT / "recipes/edm.toml", good, warn=False),
                      make_runtime("cpu"), progress=False)
    assert trainer.data.shape == (4, 8, 8) and trainer.pixels.shape == (3, 16, 16)
    grid = trainer.fit()
    assert trainer.step == 2 and grid.is_file()
    with pytest.raises(DataError, match="scaling_factor: 0.18215 in the latent set, 0.5"):
        Trainer(load_recipe(ROOT / "recipes/edm.toml", [*good, "latents.scaling_factor=0.5", 'run.name="r2"'],
                            warn=False), make_runtime("cpu"), progress=False)
    with pytest.raises(DataError, match="holds latents encoded with diffusers_vae"):
        Trainer(load_recipe(ROOT / "recipes/edm.toml", [*base, 'run.name="r3"'], warn=False),
                make_runtime("cpu"), progress=False)


def test_edm2_stores_mean_and_std_and_draws_per_batch_independently_of_world_size(
        vae_and_pixels):
    from difftk.plugins.datasets.packed import Packed

    root, vae, images = vae_and_pixels
    out = _encode(root, "edm2", sample="batch", normalize="channel", final_std=0.5)
    stored = _stored(out)
    x = torch.from_numpy(images).float() / 127.5 - 1
    with torch.no_grad():
        dist = vae.encode(x).latent_dist
    torch.testing.assert_close(stored, torch.cat([dist.mean, dist.std], 1), rtol=1e-5, atol=1e-6)
    codec = read_manifest(out).codec
    m = dist.mean.double().transpose(0, 1).reshape(4, -1)
    s2 = (dist.std.double() ** 2).transpose(0, 1).reshape(4, -1)
    assert codec["latent_mean"] == pytest.approx(m.mean(1).tolist(), rel=1e-5)
    want_std = (m.var(1) + s2.mean(1)).sqrt()  # Var[mean + std eps] = Var[mean] + E[std^2]
    assert codec["latent_std"] == pytest.approx(want_std.tolist(), rel=1e-3)
    bundle = Packed(path=str(out), heldout=4).load()
    assert bundle.train.shape == (16, 4, 8, 8)
    whole = LoaderStream(bundle.train, None, 8, seed=3, device=torch.device("cpu"), workers=0)
    halves = [LoaderStream(bundle.train, None, 8, seed=3, device=torch.device("cpu"), workers=0,
                           part=p, parts=2) for p in range(2)]
    for _ in range(3):
        batch, _ = whole.next()
        torch.testing.assert_close(torch.cat([h.next()[0] for h in halves]), batch)
    mean, std = torch.tensor(codec["latent_mean"]), torch.tensor(codec["latent_std"])
    raw = bundle.train.read(np.arange(16)).float()
    deterministic = bundle.train[:]  # held-out and validation reads take the mean
    torch.testing.assert_close(deterministic, (raw[:, :4] - mean.view(1, 4, 1, 1))
                               / std.view(1, 4, 1, 1) * 0.5, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(batch, deterministic[:8])  # the batches are draws


def test_two_processes_encode_the_same_shards_as_one(vae_and_pixels):
    root, _, _ = vae_and_pixels
    one = _encode(root, "one", sample="mean")
    spec = _spec(root, "two", sample="mean")
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node=2", "-m", "difftk", "data", "encode",
                          str(root / "pixels"), "--latents", str(spec), "-o", str(root / "two"),
                          "--device", "cpu", "--shard-items", "8"], capture_output=True,
                         text=True, timeout=240, env={**os.environ, "PYTHONPATH": path})
    assert res.returncode == 0, res.stderr
    a, b = read_manifest(one), read_manifest(root / "two")
    assert [s.sha256 for s in a.splits["train"].shards] == [
        s.sha256 for s in b.splits["train"].shards]
    assert a.codec == b.codec
