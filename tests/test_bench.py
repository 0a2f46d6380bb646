"""difftk bench: its figures, its baselines, and the smoke benchmark that keeps the step fast.

The smoke benchmark runs the library's step and a hand-written loop on the same small
U-Net, interleaved step by step, on one thread (so a loaded machine slows both alike
instead of adding thread-contention spikes), and fails when the median of the paired
per-step ratios says the library's step costs more than 10% over the raw loop.
"""

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from difftk.bench.difftk_loop import DifftkLoop
from difftk.bench.diffusers_loop import diffusers_layout
from difftk.bench.peaks import peak_for_name
from difftk.bench.run import random_data
from difftk.bench.step_split import SEGMENTS, split_steps
from difftk.cli import app
from difftk.optim.ema import EmaModel
from difftk.plugins.ema import FixedEma, PowerEma
from difftk.plugins.optimizers import Adam, AdamW, implementation_flags
from difftk.recipe import load_recipe

runner = CliRunner()

SMOKE_RECIPE = """
[run]
name = "bench-smoke"
device = "cpu"
[data]
name = "digits"
[model]
name = "unet"
channels = 16
channel_mult = [1, 2]
num_res_blocks = 1
attention_resolutions = []
[schedule]
name = "edm"
[target]
name = "edm"
sigma_data = 0.5
[weight]
name = "edm"
sigma_data = 0.5
[noise_sampling]
name = "log_normal"
[sampler]
name = "euler"
steps = 3
[precision]
name = "fp32"
[optimizer]
name = "adam"
[train]
batch_size = 16
"""


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def smoke_recipe(tmp_path):
    path = tmp_path / "smoke.toml"
    path.write_text(SMOKE_RECIPE)
    return path


def smoke_overhead(recipe, out) -> tuple[float, dict, str]:
    """The paired-step overhead of difftk over the raw loop, from one ``difftk bench`` run."""
    # The same work on both sides (the raw loop does not clip). 16x16 inputs: enough work
    # per step (~4 GFLOP) that the timer's resolution and the fixed per-step costs stay
    # well below the 10% being measured.
    result = runner.invoke(app, ["bench", str(recipe), "--shape", "1,16,16", "--compare", "raw",
                                 "--steps", "30", "--warmup", "8", "--split-steps", "0",
                                 "--set", "clipping.name=none", "--json", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    return figures["ratios"]["raw"]["paired_step_overhead"], figures, result.output


def test_difftk_step_costs_at_most_10_percent_over_a_raw_loop(smoke_recipe, tmp_path, one_thread):
    # A slowdown that landed shows in every measurement; a burst of load from another process
    # rarely in two in a row: fail only when a second measurement confirms the first.
    overhead, figures, output = smoke_overhead(smoke_recipe, tmp_path / "bench.json")
    if overhead >= 0.10:
        overhead, figures, output = smoke_overhead(smoke_recipe, tmp_path / "again.json")
    assert overhead < 0.10, f"difftk's step costs {100 * overhead:.1f}% more than a raw loop"
    assert set(figures["subjects"]) == {"difftk", "raw"}
    assert len(figures["subjects"]["raw"]["step_times_s"]) == 30
    assert figures["subjects"]["raw"]["parameters"] == figures["subjects"]["difftk"]["parameters"]
    assert "difftk vs raw" in output


def test_bench_reports_flops_mfu_split_and_sampling(smoke_recipe, tmp_path, one_thread):
    out = tmp_path / "b.json"
    result = runner.invoke(app, ["bench", str(smoke_recipe), "--shape", "1,8,8", "--steps", "2",
                                 "--warmup", "1", "--split-steps", "2", "--sampling",
                                 "--peak-tflops", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    f = json.loads(out.read_text())
    d = f["subjects"]["difftk"]
    assert d["forward_flops_per_image"] > 0 and d["training_flops_per_image"] == 3 * d[
        "forward_flops_per_image"]
    assert d["mfu"] == pytest.approx(d["training_flops_per_image"] * d["images_per_s"] / 1e12)
    assert set(f["split"]) == set(SEGMENTS) and f["split"]["forward"] > 0
    assert f["split"]["backward"] > 0 and f["split"]["optimizer"] > 0
    s = f["sampling"]
    assert s["sampler"] == "euler" and s["nfe"] == 3 and s["bare_forward_seconds"] > 0


def test_bad_baseline_is_one_sentence(smoke_recipe):
    result = runner.invoke(app, ["bench", str(smoke_recipe), "--shape", "1,8,8",
                                 "--compare", "jax"])
    assert result.exit_code != 0
    assert 'not one of raw, diffusers' in result.output


def test_diffusers_layout_only_for_the_unet(smoke_recipe, one_thread):
    data = random_data((1, 8, 8), 0, 32)
    dit = load_recipe(smoke_recipe, ["model.name=dit", "model.patch_size=2", "model.hidden_size=32",
                                     "model.depth=1", "model.num_heads=2"])
    config, why = diffusers_layout(DifftkLoop(dit, data, torch.device("cpu"), 8))
    assert config is None and "no diffusers layout" in why


def test_step_split_covers_every_segment(smoke_recipe, one_thread):
    loop = DifftkLoop(load_recipe(smoke_recipe), random_data((1, 8, 8), 0, 32), torch.device("cpu"), 8)
    split = split_steps(loop, 2)
    assert set(split) == set(SEGMENTS) and all(v >= 0 for v in split.values())
    assert loop.steps_taken == 2
    # The probes are gone afterwards: the step runs on its own parts again.
    assert type(loop.step_fn.ema) is EmaModel and not loop.model.net._forward_hooks


def test_peak_table_names_devices():
    assert peak_for_name("NVIDIA H100 80GB HBM3", True) == 989.0
    assert peak_for_name("NVIDIA H100 PCIe", True) == 756.0
    assert peak_for_name("NVIDIA A100-SXM4-80GB", False) == 19.5
    assert peak_for_name("NVIDIA L4", True) == 121.0
    assert peak_for_name("Some New Accelerator", True) is None


@pytest.mark.parametrize("rule", [FixedEma(beta=0.9), PowerEma()])
def test_ema_update_equals_the_per_parameter_lerp_loop(rule):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    ema = EmaModel(model, rule)
    reference = {name: [p.detach().clone() for p in s.parameters()] for name, s in ema.shadows.items()}
    for step in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(5, 4))  # moves the running statistics (buffers)
        ema.update(model, step, 8)
        for name, decay in ema.tracks:
            beta = decay(step, 8)
            for r, w in zip(reference[name], model.parameters(), strict=True):
                r.lerp_(w.detach(), 1.0 - beta)  # seed 001 §11: ema + (1 - beta)(w - ema)
    for name, shadow in ema.shadows.items():
        assert all(torch.equal(a, b) for a, b in zip(shadow.parameters(), reference[name], strict=True))
        assert all(torch.equal(a, b) for a, b in zip(shadow.buffers(), model.buffers(), strict=True))


@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_optimizer_implementations_compute_the_same_update(cls):
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(7)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(4)]
    results = {}
    for impl in ("for_loop", "foreach", "fused"):
        params = [nn.Parameter(p.clone()) for p in start]
        opt = cls(lr=1e-2, implementation=impl).build(params)
        for g in grads:
            for p, gp in zip(params, g, strict=True):
                p.grad = gp.clone()
            opt.step()
        results[impl] = [p.detach() for p in params]
    for impl in ("foreach", "fused"):
        for a, b in zip(results["for_loop"], results[impl], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_auto_implementation_is_chosen_per_device():
    cpu = [nn.Parameter(torch.zeros(2))]
    assert implementation_flags("auto", cpu) == {"fused": True}  # fused kernels on the CPU too
    assert implementation_flags("fused", cpu) == {"fused": True}
    assert implementation_flags("for_loop", cpu) == {"foreach": False}
    if torch.cuda.is_available():
        assert implementation_flags("auto", [nn.Parameter(torch.zeros(2, device="cuda"))]) == {
            "fused": True}


def test_auto_switches_follow_the_measured_rule_and_keep_the_maths():
    from difftk.nn.architecture import DataSpec
    from difftk.nn.auto_speed import chosen
    from difftk.plugins.architectures.unet import UNet

    # benchmarks/results/cpu_switches.json: neither pays on the CPU; CUDA not yet measured
    assert not chosen("auto", "compile", "cpu") and not chosen("auto", "channels_last", "cpu")
    assert not chosen("auto", "compile", "cuda") and not chosen("auto", "channels_last", "cuda")
    assert chosen(True, "compile", "cuda") and not chosen(False, "channels_last", "cpu")
    spec = DataSpec(shape=(1, 8, 8), out_channels=1)
    torch.manual_seed(0)
    plain = UNet(preset="digits", channels_last=False).build(spec)
    auto = UNet(preset="digits", channels_last=True).build(spec)
    auto.load_state_dict(plain.state_dict())
    for p in plain.parameters():  # non-zero output convs, so the whole network counts
        p.data.normal_(0, 0.1)
    auto.load_state_dict(plain.state_dict())
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    out = auto(x, t)
    assert out.is_contiguous(memory_format=torch.channels_last)  # NHWC all the way through
    torch.testing.assert_close(out, plain(x, t), rtol=1e-4, atol=1e-5)


def test_bench_times_a_latent_recipe_on_its_latents(smoke_recipe, tmp_path, one_thread):
    # the step `difftk train` runs: the network sees the 4x4 DCT latents, not 8x8 pixels
    out = tmp_path / "b.json"
    result = runner.invoke(app, ["bench", str(smoke_recipe), "--steps", "1", "--warmup", "1",
                                 "--split-steps", "0", "--set", 'latents.name="dct"',
                                 "--set", "latents.keep=4", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["shape"] == [1, 4, 4]


def test_the_raw_loop_runs_difftks_optimizer_implementation(smoke_recipe):
    """The raw loop's Adam uses the kernel difftk's optimizer uses (fused by default on plain
    CPU tensors), so "overhead over a raw loop" compares loops, not optimizers."""
    from difftk.bench.raw_loop import RawLoop

    data = random_data((1, 8, 8), 0, 32)
    ours = DifftkLoop(load_recipe(smoke_recipe), data, torch.device("cpu"), 8)
    raw = RawLoop(ours, data.train, None)
    for key in ("fused", "foreach"):
        assert raw.optimizer.defaults.get(key) == ours.optimizer.defaults.get(key), key
    assert ours.optimizer.defaults.get("fused") is True
