"""The latents family: pixels by default, PCA and DCT round trips, a KL autoencoder difftk
trains, diffusion on latents with decoded samples, sigma_data of the latents, the cache."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runs import train_run
from PIL import Image
from typer.testing import CliRunner

from difftk.cli import app
from difftk.latents.encoded_data import encode_data
from difftk.latents.kl_autoencoder import AutoencoderShape, KLAutoencoder, kl_to_standard_normal
from difftk.latents.latents import decode_fp32
from difftk.recipe import component_from_spec, load_recipe

runner = CliRunner()
TINY_UNET = ["train.batch_size=16", "model.channels=8", "model.channel_mult=[1]",
             "model.num_res_blocks=1", "model.attention_resolutions=[]",
             "model.mid_attention=false", "log.val_every=0", "log.num_samples=4",
             "log.checkpoint_every=0", "log.tensorboard=false", "sampler.steps=3",
             'precision.name="fp32"']
TINY_MLP = ["train.batch_size=16", "model.width=32", "model.depth=1", "log.val_every=0",
            "log.sample_every=0", "log.num_samples=4", "log.checkpoint_every=0",
            "log.tensorboard=false", "sampler.steps=3", 'precision.name="fp32"']


@pytest.fixture(scope="module")
def digits():
    return component_from_spec("data", "digits").load()


def _codec(spec, data):
    return component_from_spec("latents", spec).build(lambda: data)


@pytest.fixture(scope="module")
def tiny_autoencoder(tmp_path_factory):
    """A width-8 autoencoder ([1, 8, 8] -> [2, 4, 4]) trained 40 steps with difftk
    train-autoencoder, logging every 10 steps to metrics.jsonl."""
    out_dir = tmp_path_factory.mktemp("ae")
    recipe = Path(__file__).resolve().parent.parent / "recipes/latents/autoencoder_digits.toml"
    args = ["train-autoencoder", str(recipe), "--no-progress", "--set", f'run.out_dir="{out_dir}"',
            "--set", 'run.name="ae"', "--set", "autoencoder.width=8", "--set",
            "autoencoder.steps=40", "--set", "autoencoder.batch_size=32", "--set",
            "autoencoder.lr=3e-3", "--set", "log.every=10", "--set", "log.val_every=0",
            "--set", 'log.backends=["jsonl"]']
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    return out_dir / "ae"


def test_identity_is_the_default_and_changes_nothing(root, digits):
    recipe = load_recipe(root / "recipes/edm.toml")
    assert recipe.parts["latents"].name == "identity"
    assert recipe.to_dict()["latents"] == {"name": "identity"}
    codec = recipe.parts["latents"].build(lambda: pytest.fail("identity loads no data"))
    assert codec.identity and encode_data(codec, digits, torch.device("cpu")) is digits
    z = torch.randn(3, 1, 8, 8)
    assert decode_fp32(codec, z) is z


@pytest.mark.parametrize("spec", ["pca", "pca:whiten=true", "dct", "dct:block=4", "dct:block=2"])
def test_invertible_transforms_round_trip_digits(spec, digits):
    codec = _codec(spec, digits)
    assert codec.lossless
    x = digits.heldout
    z = codec.encode(x)
    assert torch.isfinite(z).all()
    assert float((codec.decode(z) - x).abs().max()) < 1e-5


def test_pca_is_fitted_on_the_training_split(digits):
    codec = _codec("pca", digits)
    z = codec.encode(digits.train).double()
    # Principal coordinates: centred, uncorrelated, variances falling.
    assert float(z.mean(0).abs().max()) < 1e-4
    cov = torch.cov(z.T)
    off = cov - torch.diag(torch.diag(cov))
    assert float(off.abs().max()) < 1e-3 * float(cov.diag().max())
    var = cov.diag()
    assert bool((var[:-1] >= var[1:] - 1e-4).all())
    whitened = _codec("pca:whiten=true", digits).encode(digits.train)
    top = whitened[:, :20].std(0)
    assert torch.allclose(top, torch.ones(20), atol=1e-3)  # unit variance per component


def test_truncated_transforms_keep_the_leading_coefficients(digits):
    pca = _codec("pca:components=10", digits)
    z = pca.encode(digits.heldout)
    assert z.shape == (digits.heldout.shape[0], 10) and not pca.lossless
    assert torch.allclose(pca.encode(pca.decode(z)), z, atol=1e-4)  # a projection
    full = _codec("pca", digits)
    err10 = (pca.decode(z) - digits.heldout).square().mean()
    err5 = (full.decode(torch.cat([full.encode(digits.heldout)[:, :5],
                                   torch.zeros(z.shape[0], 59)], 1)) - digits.heldout).square().mean()
    assert err10 < err5  # more components, less error
    low = _codec("dct:keep=4", digits)
    assert low.encode(digits.heldout).shape[1:] == (1, 4, 4)
    blocks = _codec("dct:block=4:keep=2", digits)
    assert blocks.encode(digits.heldout).shape[1:] == (4, 2, 2)
    # The DC coefficient of a whole-image DCT is sqrt(H W) x the image mean.
    dc = low.encode(digits.heldout)[:, 0, 0, 0]
    assert torch.allclose(dc, digits.heldout.mean((1, 2, 3)) * 8, atol=1e-5)


def test_kl_term_matches_its_closed_form():
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn((5, 2, 3, 3), generator=gen, dtype=torch.float64)
    logvar = torch.randn((5, 2, 3, 3), generator=gen, dtype=torch.float64)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    assert torch.allclose(kl_to_standard_normal(mean, logvar), expected, rtol=1e-12)
    zero = kl_to_standard_normal(torch.zeros(2, 4), torch.zeros(2, 4))
    assert torch.equal(zero, torch.zeros(2))  # the prior itself costs nothing
    # One coordinate, mean 1, variance e: 0.5 (1 + e - 1 - 1) = 0.5 (e - 1)
    one = kl_to_standard_normal(torch.ones(1, 1, dtype=torch.float64),
                                torch.ones(1, 1, dtype=torch.float64))
    assert float(one) == pytest.approx(0.5 * (math.e - 1), rel=1e-12)


def test_the_autoencoder_trains_and_its_reconstruction_error_falls(tiny_autoencoder):
    rows = [json.loads(line) for line in (tiny_autoencoder / "metrics.jsonl").read_text().splitlines()]
    rec = [r["value"] for r in rows if r.get("tag") == "loss/reconstruction"]
    kl = [r["value"] for r in rows if r.get("tag") == "loss/kl"]
    assert len(rec) == 4 and len(kl) == 4
    assert rec[-1] < 0.5 * rec[0], rec
    info = json.loads((tiny_autoencoder / "autoencoder.json").read_text())
    assert info["latent_shape"] == [2, 4, 4] and info["pixel_shape"] == [1, 8, 8]
    assert info["width"] == 8 and info["downsample"] == 2 and info["latent_std"] > 0
    assert (tiny_autoencoder / "reconstructions.png").is_file()
    assert (tiny_autoencoder / "recipe.toml").is_file()


def test_latents_are_cached_beside_the_weights(tiny_autoencoder, digits):
    spec = f"autoencoder:weights={json.dumps(str(tiny_autoencoder / 'autoencoder.safetensors'))}"
    codec = _codec(spec, digits)
    first = encode_data(codec, digits, torch.device("cpu"))
    cached = list((tiny_autoencoder / "autoencoder.latents").glob("*/manifest.json"))
    assert len(cached) == 1
    again = _codec(spec, digits)

    def refuse(x):
        raise AssertionError("the encoder ran again")

    again.encode = refuse
    second = encode_data(again, digits, torch.device("cpu"))
    assert torch.equal(first.train, second.train) and torch.equal(first.heldout, second.heldout)
    assert first.train.shape[1:] == (2, 4, 4) and first.kind == "image"
    assert torch.equal(first.train_labels, digits.train_labels)
    # other data: another key, so the encoder runs
    other = encode_data(_codec(spec, digits), component_from_spec(
        "data", "digits:split_seed=1").load(), torch.device("cpu"))
    assert not torch.equal(other.train, first.train)
    assert len(list((tiny_autoencoder / "autoencoder.latents").glob("*/manifest.json"))) == 2


def test_sigma_data_is_measured_on_the_latents(root, tmp_path):
    from difftk.run.runtime import make_runtime
    from difftk.train.trainer import Trainer

    recipe = load_recipe(root / "recipes/architectures/mlp.toml", [
        *TINY_MLP, 'latents.name="pca"', "latents.components=16", "train.steps=1",
        f'run.out_dir="{tmp_path}"'])
    trainer = Trainer(recipe, make_runtime("cpu"), progress=False)
    latents_std = float(trainer.data.train.double().std())
    assert trainer.spec.shape == (16,) and trainer.data.kind == "vector"
    assert trainer.recipe.parts["target"].sigma_data == pytest.approx(latents_std, abs=1e-5)
    assert abs(latents_std - trainer.pixels.sigma_data) > 0.05  # not the pixels' std


def _sample_checks(run_dir, tmp_path):
    npz = tmp_path / f"{run_dir.name}.npz"
    out = runner.invoke(app, ["sample", str(run_dir), "-n", "5", "--steps", "2", "-o", str(npz)])
    assert out.exit_code == 0, out.output
    samples = np.load(npz)["samples"]
    assert samples.shape == (5, 1, 8, 8) and np.isfinite(samples).all()
    folder = tmp_path / f"{run_dir.name}_png"
    out = runner.invoke(app, ["sample", str(run_dir), "-n", "3", "--steps", "2",
                              "--format", "png-dir", "-o", str(folder)])
    assert out.exit_code == 0, out.output
    images = sorted(folder.iterdir())
    assert len(images) == 3 and Image.open(images[0]).size == (8, 8)
    return samples


def test_diffusion_on_pca_latents_trains_and_samples_decoded_pixels(root, tmp_path):
    run = train_run(root, tmp_path, "recipes/architectures/mlp.toml", "pca",
                 [*TINY_MLP, 'latents.name="pca"', "latents.components=20", "train.steps=3"])
    state = json.loads((run / "checkpoints/latest/state.json").read_text())
    assert state["spec"]["shape"] == [20] and state["kind"] == "image"
    assert 'name = "pca"' in (run / "checkpoints/latest/recipe.toml").read_text()
    samples = _sample_checks(run, tmp_path)
    # Decoded samples lie in the span of the 20 leading components around the mean.
    from difftk.eval.trained_model import load_trained_model

    model = load_trained_model(run, torch.device("cpu"))
    x = torch.from_numpy(samples)
    assert torch.allclose(model.codec.decode(model.codec.encode(x)), x, atol=1e-4)


def test_diffusion_on_autoencoder_latents_trains_and_samples_decoded_pixels(
        root, tmp_path, tiny_autoencoder):
    weights = tiny_autoencoder / "autoencoder.safetensors"
    run = train_run(root, tmp_path, "recipes/edm.toml", "ae",
                 [*TINY_UNET, 'latents.name="autoencoder"', f'latents.weights="{weights}"',
                  "train.steps=3", "log.eval_every=3", "log.eval_samples=8"])
    recorded = (run / "recipe.toml").read_text()
    assert f'weights = "{weights.resolve()}"' in recorded
    state = json.loads((run / "checkpoints/latest/state.json").read_text())
    assert state["spec"]["shape"] == [2, 4, 4]
    assert Image.open(run / "samples/final.png").size[0] > 8  # a grid of decoded images
    _sample_checks(run, tmp_path)
    out = runner.invoke(app, ["eval", str(run), "-n", "8", "--steps", "2", "--json"])
    assert out.exit_code == 0, out.output
    metrics = json.loads(out.output)["metrics"]
    assert set(metrics) == {"pixel_fid", "pixel_kid"}  # pixels: the decoded samples
    assert math.isfinite(metrics["pixel_fid"])
    out = runner.invoke(app, ["eval", str(run), "-n", "8", "--steps", "2", "--nll"])
    assert out.exit_code != 0 and "--nll" in out.output


def test_your_own_weights_without_a_json_take_the_shape_from_the_recipe(tmp_path, digits):
    from safetensors.torch import save_file

    model = KLAutoencoder(AutoencoderShape(1, 8, 3, 2))
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    codec = _codec(f"autoencoder:weights={json.dumps(str(path))}:width=8:latent_channels=3:"
                   "downsample=2", digits)
    assert codec.encode(digits.heldout[:4]).shape == (4, 3, 4, 4)
    from difftk.errors import DataError

    with pytest.raises(DataError, match="latents.width"):
        _codec(f"autoencoder:weights={json.dumps(str(path))}", digits)
    with pytest.raises(DataError, match="layout"):
        _codec(f"autoencoder:weights={json.dumps(str(path))}:width=16:latent_channels=3:"
               "downsample=2", digits)


def test_bad_latents_input_is_one_sentence(root, tmp_path):
    out = runner.invoke(app, ["train", str(root / "recipes/edm.toml"), "--no-progress",
                              "--set", f'run.out_dir="{tmp_path}"', "--set",
                              'latents.name="autoencoder"', "--set",
                              f'latents.weights="{tmp_path}/none.safetensors"'])
    assert out.exit_code != 0 and "no such autoencoder weights file" in out.output
    assert "Traceback" not in out.output
    out = runner.invoke(app, ["validate", str(root / "recipes/edm.toml"), "--set",
                              'latents.name="dct"', "--set", "latents.keep=-1"])
    assert out.exit_code == 2 and "latents.keep" in out.output
    out = runner.invoke(app, ["train-autoencoder", str(root / "recipes/latents/autoencoder_digits.toml"),
                              "--set", "autoencoder.downsample=3"])
    assert out.exit_code == 2 and "autoencoder.downsample" in out.output
