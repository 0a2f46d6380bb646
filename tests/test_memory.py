"""difftk memory: the seed 001 §12.5 estimate against the measured peak of a real step (CPU, fp32)."""

from typer.testing import CliRunner

from difftk.cli import app
from difftk.recipe import load_recipe
from difftk.train.memory import memory_report

runner = CliRunner()
SETS = ["model.width=64", "train.batch_size=256"]


def test_fp32_estimate_is_within_25_percent_of_the_measured_peak(root):
    report = memory_report(load_recipe(root / "recipes/toy2d.toml", SETS, warn=False))
    w = report.weight_bytes
    assert w == 4 * report.parameters
    assert report.optimizer_bytes >= 2 * w  # Adam: m and v (plus step counters)
    assert report.activation_bytes > w  # activations dominate at this batch size
    estimate = report.budget(mixed=False)["total"]
    peak = report.measured.peak_bytes
    assert abs(estimate - peak) / peak < 0.25
    mixed = report.budget(mixed=True)
    assert mixed["total"] < estimate and mixed["master weights (fp32)"] == w
    ck = report.measured_checkpointed
    assert ck is not None and ck.peak_bytes < peak  # recomputation stores less


def test_memory_command_prints_the_budget(root):
    args = ["memory", str(root / "recipes/toy2d.toml")]
    for s in SETS:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for word in ("master weights", "optimizer moments", "activations", "measured peak", "bf16/fp16"):
        assert word in res.output


def test_a_latent_recipe_is_measured_on_its_latents(root):
    # DCT keeping 4x4 of 8x8: the U-Net's activations shrink with the area it runs on
    sets = ["train.batch_size=16", "model.channels=16"]
    pixels = memory_report(load_recipe(root / "recipes/edm.toml", sets, warn=False))
    latents = memory_report(load_recipe(root / "recipes/edm.toml", [
        *sets, 'latents.name="dct"', "latents.keep=4"], warn=False))
    assert latents.parameters == pixels.parameters
    assert latents.activation_bytes < 0.4 * pixels.activation_bytes
