"""Models out to diffusers and back in: the export predicts what difftk predicts, the
folder drives diffusers' pipelines, diffusers' network trains under difftk's recipes, and
train.init_from starts a run from a checkpoint's or a folder's weights."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from difftk.cli import app
from difftk.errors import CheckpointError
from difftk.interop.unet_layout import diffusers_config, not_expressible
from difftk.nn.architecture import DataSpec
from difftk.plugins.architectures.unet import UNet
from difftk.recipe import load_recipe
from difftk.run.assemble import restore
from difftk.run.runtime import make_runtime
from difftk.run.state_record import sealed
from difftk.train.trainer import Trainer

diffusers = pytest.importorskip("diffusers")
runner = CliRunner()

# Ho et al.'s layout in small: added embedding, one head, attention at 4x4 and in the middle.
SMALL_DDPM = ["model.channels=32", "model.channel_mult=[1, 2]", "model.num_res_blocks=1",
              "model.attention_resolutions=[4]", "model.num_heads=1", "model.scale_shift=false"]


def _recipe(root, out, name, *sets, path="recipes/ddpm.toml"):
    common = [f'run.out_dir="{out}"', f'run.name="{name}"', "train.steps=1", "train.batch_size=8",
              "log.val_every=0", "log.sample_every=0", "log.num_samples=2", "log.tensorboard=false",
              "sampler.steps=2",
              # The first update copies the weights, so the EMA is never the young, mostly
              # initial copy that sampling and export replace by the raw weights.
              'ema.name="ema_warmup"']
    return load_recipe(root / path, [*common, *sets], warn=False)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A one-step DDPM run whose EMA weights are then made random, so every layer matters
    (trained EMA weights of one step are the zero-initialised output layers' near-zeros)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = tmp_path_factory.mktemp("runs")
    Trainer(_recipe(root, out, "small", *SMALL_DDPM), make_runtime("cpu"), progress=False).fit()
    ckpt = out / "small" / "checkpoints" / "latest"
    gen = torch.Generator().manual_seed(0)
    ema = {k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in
           load_file(str(ckpt / "ema.safetensors")).items()}
    save_file(ema, str(ckpt / "ema.safetensors"))
    state = json.loads((ckpt / "state.json").read_text())  # the new file's checksum
    digest = hashlib.sha256((ckpt / "ema.safetensors").read_bytes()).hexdigest()
    state["files"]["ema.safetensors"] = f"sha256:{digest}"
    (ckpt / "state.json").write_text(json.dumps(sealed(state)))  # state.json's own checksum
    return out / "small"


def _export(run, folder, *extra):
    res = runner.invoke(app, ["export", str(run), "--format", "diffusers", "-o", str(folder), *extra])
    assert res.exit_code == 0, res.output
    return folder


def test_ddpm_cifar10_preset_maps_with_the_same_parameters():
    from difftk.interop.unet_keys import to_diffusers

    cfg, spec = UNet(preset="ddpm_cifar10"), DataSpec((3, 32, 32), 3)
    net = cfg.build(spec)
    config = diffusers_config(cfg, spec, net)
    theirs = diffusers.UNet2DModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    ours = to_diffusers(net.state_dict(), cfg, spec)
    assert set(ours) == set(theirs.state_dict())
    assert all(ours[k].shape == v.shape for k, v in theirs.state_dict().items())
    count = sum(p.numel() for p in net.parameters())
    assert count == sum(p.numel() for p in theirs.parameters()) == 35_746_307
    # google/ddpm-cifar10-32's block layout: attention at 16x16 only, one head.
    assert config["down_block_types"] == ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
                                          "DownBlock2D"]
    assert config["block_out_channels"] == [128, 256, 256, 256] and config["layers_per_block"] == 2


def test_export_predicts_what_difftk_predicts(small_run, tmp_path):
    folder = _export(small_run, tmp_path / "out")
    assert {p.name for p in folder.iterdir()} == {
        "config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json"}
    unet = diffusers.UNet2DModel.from_pretrained(folder).eval()
    ours = restore(small_run, torch.device("cpu"))
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([1, 10, 500, 1000])
    with torch.no_grad():
        expected = ours.denoiser(x, ours.denoiser.schedule.levels_at(t.double())).pred
        got = unet(x, t - 1).sample
        unshifted = unet(x, t).sample
    assert expected.abs().mean() > 0.05  # random weights: a real prediction, not zeros
    assert (got - expected).abs().max() < 1e-5
    assert (unshifted - expected).abs().max() > 1e-3  # the t = 1..T vs 0..T-1 shift matters

    scheduler = diffusers.DDPMScheduler.from_pretrained(folder)
    table = ours.denoiser.schedule.table["alpha_bar"][1:]  # difftk's t = 1..T is k = 0..T-1
    assert torch.allclose(scheduler.alphas_cumprod.double(), table, rtol=1e-5)
    config = json.loads((folder / "scheduler_config.json").read_text())
    assert (config["prediction_type"], config["variance_type"], config["clip_sample"]) == (
        "epsilon", "fixed_small", True)  # ddpm.toml's sampler clips x0


def test_export_takes_ema_by_default_and_raw_weights_on_request(small_run, tmp_path):
    ema = load_file(str(_export(small_run, tmp_path / "ema") / "diffusion_pytorch_model.safetensors"))
    raw = load_file(str(_export(small_run, tmp_path / "raw", "--no-ema")
                        / "diffusion_pytorch_model.safetensors"))
    ckpt = small_run / "checkpoints" / "latest"
    want_ema = load_file(str(ckpt / "ema.safetensors"))["net.out.weight"]
    want_raw = load_file(str(ckpt / "model.safetensors"))["net.out.weight"]
    assert torch.equal(ema["conv_out.weight"], want_ema)
    assert torch.equal(raw["conv_out.weight"], want_raw)


@pytest.mark.parametrize("pipeline, scheduler", [("DDIMPipeline", "DDIMScheduler"),
                                                 ("DDPMPipeline", "DDPMScheduler")])
def test_diffusers_pipeline_samples_from_the_folder(small_run, tmp_path, pipeline, scheduler):
    folder = _export(small_run, tmp_path / "out")
    pipe = getattr(diffusers, pipeline)(
        unet=diffusers.UNet2DModel.from_pretrained(folder),
        scheduler=getattr(diffusers, scheduler).from_pretrained(folder))
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=2, num_inference_steps=3, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (2, 8, 8, 1) and (images >= 0).all() and (images <= 1).all()


def test_layouts_and_runs_diffusers_cannot_express_say_why(root, tmp_path):
    spec = DataSpec((1, 8, 8), 1)
    pooled = UNet(channels=32, channel_mult=[1, 2], resample_with_conv=False)
    assert "resample_with_conv" in not_expressible(pooled, spec, pooled.build(spec))
    odd = UNet(channels=24, channel_mult=[1, 2])  # GroupNorm groups 24 and 16
    assert "group count" in not_expressible(odd, spec, odd.build(spec))
    fourier = UNet(channels=32, channel_mult=[1, 2], embedding="fourier")
    assert "fourier" in not_expressible(fourier, spec, fourier.build(spec))

    r = _recipe(root, tmp_path, "edm", "model.channels=32", path="recipes/edm.toml")
    Trainer(r, make_runtime("cpu"), progress=False).fit()
    res = runner.invoke(app, ["export", str(tmp_path / "edm"), "-o", str(tmp_path / "x")])
    assert res.exit_code == 1 and "sigma-space schedule" in res.output
    assert not (tmp_path / "x").exists()  # nothing is written before every check passed
    res = runner.invoke(app, ["export", str(tmp_path / "edm"), "--format", "onnx", "-o", "x"])
    assert res.exit_code == 1 and 'unknown export format "onnx"' in res.output
    # a DDPM run on DCT latents: the folder would draw 4x4 coefficients as if they were images
    r = _recipe(root, tmp_path, "latent", *SMALL_DDPM, 'latents.name="dct"', "latents.keep=4")
    Trainer(r, make_runtime("cpu"), progress=False).fit()
    res = runner.invoke(app, ["export", str(tmp_path / "latent"), "-o", str(tmp_path / "y")])
    assert res.exit_code == 1 and 'diffuses in the "dct" latents' in res.output
    assert not (tmp_path / "y").exists()


def test_init_from_a_checkpoint_or_an_exported_folder(small_run, root, tmp_path):
    folder = _export(small_run, tmp_path / "out")
    want = restore(small_run, torch.device("cpu")).denoiser.state_dict()
    for source in (small_run, folder):
        r = _recipe(root, tmp_path, f"init-{source.name}", *SMALL_DDPM,
                    f'train.init_from="{source}"')
        trainer = Trainer(r, make_runtime("cpu"), progress=False)
        got = trainer.model.state_dict()
        assert max((got[k] - want[k]).abs().max() for k in want) < 1e-6, source
        assert torch.equal(trainer.ema.module.net.out.weight, got["net.out.weight"])

    other = _recipe(root, tmp_path, "wider", *SMALL_DDPM, "model.channels=64",
                    f'train.init_from="{small_run}"')
    with pytest.raises(CheckpointError, match=r"does not fit this recipe's model: .*differ in shape"):
        Trainer(other, make_runtime("cpu"), progress=False)
    missing = _recipe(root, tmp_path, "missing", f'train.init_from="{tmp_path / "nope"}"')
    with pytest.raises(CheckpointError, match="does not exist"):
        Trainer(missing, make_runtime("cpu"), progress=False)


def test_diffusers_unet2d_trains_exports_and_fine_tunes(root, tmp_path, registry):
    assert registry.get("architectures", "diffusers_unet2d").provider.builtin
    path = "recipes/architectures/diffusers_unet2d.toml"
    r = _recipe(root, tmp_path, "d", "train.steps=2", path=path)
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    trainer.fit()
    assert trainer.step == 2
    folder = _export(tmp_path / "d", tmp_path / "out")
    unet = diffusers.UNet2DModel.from_pretrained(folder).eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        expected = trainer.ema.module(x, trainer.model.schedule.levels_at(t.double())).pred
        assert (unet(x, t - 1).sample - expected).abs().max() < 1e-5

    tuned = _recipe(root, tmp_path, "tuned", f'model.folder="{folder}"',
                    f'train.init_from="{folder}"', path=path)
    again = Trainer(tuned, make_runtime("cpu"), progress=False)
    for k, v in unet.state_dict().items():
        assert torch.equal(again.model.net.unet.state_dict()[k], v), k


def test_the_export_writes_the_recipes_grid_and_sample_carries_clipping_to_ddim(tmp_path):
    from pathlib import Path

    from difftk.interop.scheduler_config import scheduler_config
    from difftk.recipe import sampler_with_overrides

    root = Path(__file__).resolve().parent.parent
    r = _recipe(root, tmp_path, "x")  # ddpm.toml: a linspace grid that clips
    assert r.parts["sampler"].grid == "linspace" and r.parts["sampler"].clip_denoised
    assert scheduler_config(r.parts, "0.30")["timestep_spacing"] == "linspace"
    ddim = sampler_with_overrides(r, "ddim", 50)
    assert ddim.name == "ddim" and ddim.clip_denoised and ddim.grid == "linspace"
