"""difftk sample / eval on the file difftk ema writes; PNG folders and .npz outputs."""

import json

import numpy as np
import torch
from cli_runs import train_run
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from difftk.cli import app

runner = CliRunner()
TINY_UNET = ["train.batch_size=16", "model.channels=8", "model.channel_mult=[1]",
             "model.num_res_blocks=1", "model.attention_resolutions=[]", "log.val_every=0",
             "log.num_samples=4", "log.checkpoint_every=0", "log.tensorboard=false",
             "sampler.steps=3", 'precision.name="fp32"', "schedule.T=50"]


def test_sample_and_eval_take_the_file_difftk_ema_writes(root, tmp_path):
    # 4 steps of a class-conditional digits model with raw-weight snapshots every 2
    conditional_run = train_run(root, tmp_path, "recipes/ddpm.toml", "cond",
                             [*TINY_UNET, "train.steps=4", "train.class_conditional=true",
                              "ema.snapshot_every=2"])
    weights = tmp_path / "phema.safetensors"
    out = runner.invoke(app, ["ema", str(conditional_run), "--beta", "0.5", "-o", str(weights)])
    assert out.exit_code == 0, out.output

    from difftk.eval.trained_model import load_trained_model

    model = load_trained_model(weights, torch.device("cpu"))
    assert model.step == 4 and model.spec.num_classes == 10 and model.kind == "image"
    stored = load_file(str(weights))
    loaded = model.denoiser.state_dict()
    assert stored.keys() == loaded.keys()
    assert all(torch.equal(stored[k], loaded[k]) for k in stored)

    npz = tmp_path / "s.npz"
    out = runner.invoke(app, ["sample", str(weights), "-n", "6", "--steps", "2", "-o", str(npz)])
    assert out.exit_code == 0, out.output
    arrays = np.load(npz)
    assert arrays["samples"].shape == (6, 1, 8, 8)
    assert arrays["labels"].tolist() == [0, 1, 2, 3, 4, 5]  # cycles through the classes
    assert arrays["value_range"].tolist() == [-1.0, 1.0]

    folder = tmp_path / "pngs"
    out = runner.invoke(app, ["sample", str(weights), "-n", "6", "--steps", "2", "--label", "7",
                              "--label", "2", "--format", "png-dir", "-o", str(folder)])
    assert out.exit_code == 0, out.output
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["000000_label7.png", "000001_label2.png", "000002_label7.png",
                     "000003_label2.png", "000004_label7.png", "000005_label2.png"]
    out = runner.invoke(app, ["sample", str(weights), "-n", "6", "--steps", "2", "--label", "7",
                              "--label", "2", "-o", str(npz)])
    labelled = np.load(npz)
    assert labelled["labels"].tolist() == [7, 2, 7, 2, 7, 2]
    # the same seed draws the same samples; a PNG holds them as 0-255 pixels of [-1, 1]
    pixels = np.clip(np.round((labelled["samples"][:, 0] + 1) / 2 * 255), 0, 255)
    for i, name in enumerate(names):
        image = np.asarray(Image.open(folder / name))
        assert image.dtype == np.uint8 and image.shape == (8, 8)
        assert np.abs(image.astype(int) - pixels[i]).max() <= 1

    out = runner.invoke(app, ["eval", str(weights), "-n", "8", "--batch-size", "4", "--json",
                              "--steps", "2", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["step"] == 4 and report["metrics"]["pixel_fid"] > 0

    out = runner.invoke(app, ["sample", str(weights), "--no-ema", "-o", str(npz)])
    assert out.exit_code == 1 and "--no-ema needs a checkpoint" in out.stderr


def test_a_weights_file_without_a_recipe_is_refused_in_one_sentence(tmp_path):
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, str(bare))
    out = runner.invoke(app, ["sample", str(bare), "-o", str(tmp_path / "x.png")])
    assert out.exit_code == 1 and "records no recipe" in out.stderr


def test_vector_samples_state_an_unbounded_range_and_refuse_png_folders(root, tmp_path):
    run = train_run(root, tmp_path, "recipes/toy2d.toml", "toy",
                 ["model.width=16", "model.depth=1", "train.batch_size=32", "train.steps=2",
                  "log.val_every=0", "log.num_samples=8", "sampler.steps=2",
                  "log.tensorboard=false"])
    npz = tmp_path / "v.npz"
    out = runner.invoke(app, ["sample", str(run), "-n", "5", "-o", str(npz)])
    assert out.exit_code == 0, out.output
    arrays = np.load(npz)
    assert arrays["samples"].shape == (5, 2) and "labels" not in arrays
    assert np.isinf(arrays["value_range"]).all()
    out = runner.invoke(app, ["sample", str(run), "--format", "png-dir", "-o", str(tmp_path / "d")])
    assert out.exit_code == 1 and "png-dir writes images" in out.stderr
    out = runner.invoke(app, ["sample", str(run), "-o", str(tmp_path / "x.jpg")])
    assert out.exit_code == 1 and "--format png-dir" in out.stderr


def test_pixels_round_trip_through_a_per_channel_scaling():
    from difftk.eval.sample_files import to_uint8, value_range

    class Part:
        mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]

    pixels = torch.randint(0, 256, (3, 3, 4, 4))
    mean = torch.tensor(Part.mean).view(1, 3, 1, 1)
    std = torch.tensor(Part.std).view(1, 3, 1, 1)
    x = (pixels.double() / 255 - mean) / std
    assert np.array_equal(to_uint8(x, np.array(Part.mean), np.array(Part.std)),
                          pixels.permute(0, 2, 3, 1).numpy())
    rows = value_range("image", Part(), (3, 4, 4))
    assert rows.shape == (3, 2) and np.allclose(rows[0], [-2.0, 3.0])
