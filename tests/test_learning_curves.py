"""Learning curves while a run trains: seed 003's NLL bits/dim and mean MSE at log.eval_every
(against the bound's closed form, and equal to `difftk eval --nll` on the same checkpoint), and
the gradient variance by noise level at log.grad_variance_every (logged without changing the
training)."""

import json
import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from difftk.cli import app

runner = CliRunner()
DDPM_TINY = ["train.batch_size=16", "model.channels=8", "model.channel_mult=[1]",
             "model.num_res_blocks=1", "model.attention_resolutions=[]", "schedule.T=20",
             'precision.name="fp32"', "log.val_every=0", "log.num_samples=4", "sampler.steps=3",
             "log.checkpoint_every=0", "log.every=1", 'log.backends=["jsonl"]']
TOY_TINY = ["model.width=16", "model.depth=1", "train.batch_size=32", "log.every=1",
            "log.num_samples=8", "sampler.steps=2", "log.val_every=0", "log.checkpoint_every=0",
            'log.backends=["jsonl"]']


def train(root, recipe, out_dir, name, sets):
    args = ["train", str(root / "recipes" / recipe), "--no-progress", "--set",
            f'run.out_dir="{out_dir}"', "--set", f'run.name="{name}"']
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    return out_dir / name, res


def scalars(run_dir) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        item = json.loads(line)
        if "value" in item:
            out.setdefault(item["tag"], {})[item["step"]] = item["value"]
    return out


class _Constant(nn.Module):
    """Always answers x0 = c: the exact denoiser of a data set that is the one point c."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, so the device can be read

    def forward(self, x, time, labels=None):
        return torch.full_like(x, self.value)


def _one_point_monitor(n: int, rank: int = 0, world_size: int = 1):
    from difftk.data.dataset import DataBundle
    from difftk.diffusion.denoiser import Denoiser
    from difftk.nn.architecture import DataSpec
    from difftk.plugins.schedules import Linear
    from difftk.plugins.targets import X0
    from difftk.plugins.variance import FixedSmall
    from difftk.run.runtime import Runtime
    from difftk.train.monitor import Monitor

    sch = Linear(T=20, beta_start=1e-4, beta_end=0.05)
    c = 2 * 200 / 255 - 1
    den = Denoiser(_Constant(c), sch, X0(), FixedSmall())
    data = DataBundle(train=torch.full((4, 1, 4, 4), c), heldout=torch.full((n, 1, 4, 4), c))
    runtime = Runtime(torch.device("cpu"), rank, world_size)
    return Monitor(den, den, None, None, data, DataSpec((1, 4, 4), 1), runtime), sch, c


def test_heldout_bound_of_a_one_point_data_set_is_its_closed_form(monkeypatch):
    """Data = one 8-bit level c, denoiser = c: every KL vanishes and the bound is the prior
    term plus the decoder's -log2 of the mass of N(c, beta_tilde_2) on c's bin; the mean MSE
    is 0. Cut into chunks over two processes, the two halves add up to the same numbers."""
    from difftk.diffusion.vlb import approx_standard_normal_cdf
    from difftk.train import monitor as monitor_module

    monitor, sch, c = _one_point_monitor(7)
    out = monitor.heldout_bound(7)
    ab = float(sch.table["alpha_bar"][-1])
    lt = 0.5 * (-1 - math.log(1 - ab) + (1 - ab) + ab * c**2) / math.log(2)
    z = torch.tensor(1 / 255 / math.sqrt(float(sch.table["posterior_variance"][2])))
    l0 = -math.log2(float(approx_standard_normal_cdf(z) - approx_standard_normal_cdf(-z)))
    assert out["nll_bpd"] == pytest.approx(lt + l0, rel=1e-4)
    assert out["prior_bpd"] == pytest.approx(lt, rel=1e-5)
    assert out["decoder_bpd"] == pytest.approx(l0, rel=1e-4)
    assert out["mean_mse"] == pytest.approx(0.0, abs=1e-12)

    monkeypatch.setattr(monitor_module, "CHUNK", 3)  # 7 items: chunks 0, 2 on rank 0; 1 on rank 1
    halves = [_one_point_monitor(7, rank, 2)[0].heldout_bound(7) for rank in (0, 1)]
    assert halves[0]["nll_bpd"] > halves[1]["nll_bpd"] > 0  # 6 items' share, then 1 item's
    assert halves[0]["nll_bpd"] + halves[1]["nll_bpd"] == pytest.approx(out["nll_bpd"], rel=1e-6)


def test_the_bound_applies_only_to_image_data_on_a_table():
    from difftk.eval.heldout_bound import bound_keys, bound_problem
    from difftk.plugins.schedules import EDM, Linear

    assert bound_problem(Linear(), "image") is None
    assert "no table" in bound_problem(EDM(), "image")
    assert "8-bit pixels" in bound_problem(Linear(), "vector")
    assert "latent encoding" in bound_problem(Linear(), "image", in_latents=True)
    assert bound_keys(["fid", "mse"]) == ["mean_mse", "x0_mse"]


def test_a_run_logs_nll_and_mean_mse_at_eval_every_equal_to_difftk_eval(root, tmp_path):
    """eval_every = 2 over 5 steps: steps 2, 4 and the last; the last values are what
    `difftk eval --nll` gives on the final checkpoint (EMA weights, same items, same noise)."""
    from difftk.data.batches import mix_seed
    from difftk.train.monitor import BOUND_SEED

    run, _ = train(root, "ddpm.toml", tmp_path, "curves", DDPM_TINY + [
        "train.steps=5", "log.eval_every=2", 'log.eval_metrics=["nll", "mse"]',
        "log.eval_items=6"])
    logged = scalars(run)
    for tag in ("eval/nll_bpd", "eval/prior_bpd", "eval/decoder_bpd", "eval/mean_mse",
                "eval/x0_mse"):
        assert sorted(logged[tag]) == [2, 4, 5], tag
    assert not [t for t in logged if "fid" in t or "kid" in t]  # "fid" was not asked for
    assert all(v > 0 for v in logged["eval/nll_bpd"].values())

    res = runner.invoke(app, ["eval", str(run), "--no-metrics", "--nll", "--nll-samples", "6",
                              "--seed", str(mix_seed(BOUND_SEED, 0)), "--json",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    nll = json.loads(res.stdout)["nll"]
    for key in ("nll_bpd", "mean_mse", "prior_bpd", "decoder_bpd", "x0_mse"):
        assert logged[f"eval/{key}"][5] == pytest.approx(nll[key], rel=1e-6), key

    # the importance-sampled bound of the same images (eval/importance_likelihood.py)
    res = runner.invoke(app, ["eval", str(run), "--no-metrics", "--nll", "--nll-samples", "6",
                              "--nll-method", "importance", "--trajectories", "4",
                              "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    iw = json.loads(res.stdout)["nll"]
    assert iw["nll_method"] == "importance" and iw["importance_samples"] == 4
    assert iw["nll_bpd"] == iw["iwae_bpd"] == iw["bound_k4_bpd"] < iw["bound_k1_bpd"]
    # the Monte-Carlo ELBO over 24 trajectories estimates the closed-form bound
    assert iw["elbo_bpd"] == pytest.approx(nll["nll_bpd"], abs=4 * iw["elbo_estimate_std_bpd"])


def test_the_bound_is_skipped_with_one_note_where_it_does_not_apply(root, tmp_path):
    """toy2d: EDM's schedule (no table), 2-D data: sample metrics every step, NLL and mean
    MSE never, and the reason said once, not at every evaluation."""
    run, res = train(root, "toy2d.toml", tmp_path, "toy", TOY_TINY + [
        "train.steps=3", "log.eval_every=1", "log.eval_samples=50"])
    logged = scalars(run)
    assert sorted(logged["eval/frechet_distance"]) == [1, 2, 3]
    assert not [t for t in logged if "nll" in t or "mse" in t]
    assert res.stderr.count("log.eval_metrics: nll and mse skipped") == 1
    assert "no table" in res.stderr


def test_gradient_variance_is_logged_at_its_interval_and_leaves_training_unchanged(root,
                                                                                  tmp_path):
    from safetensors.torch import load_file

    plain, _ = train(root, "toy2d.toml", tmp_path, "plain", TOY_TINY + ["train.steps=5"])
    measured, _ = train(root, "toy2d.toml", tmp_path, "measured", TOY_TINY + [
        "train.steps=5", "log.grad_variance_every=2", "log.grad_variance_samples=12",
        "log.grad_variance_buckets=3", 'log.grad_variance_targets=["run", "x0"]'])
    for file in ("model.safetensors", "ema.safetensors"):
        a = load_file(plain / "checkpoints/latest" / file)
        b = load_file(measured / "checkpoints/latest" / file)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), file

    logged = scalars(measured)
    for target in ("run", "x0"):
        for b in range(3):
            assert sorted(logged[f"grad_variance/{target}/bucket{b}"]) == [2, 4, 5]
            assert all(v > 0 for v in logged[f"grad_variance/{target}/bucket{b}"].values())
        for step in (2, 4, 5):  # the shares of the total gradient add up to 1
            total = sum(logged[f"grad_share/{target}/bucket{b}"][step] for b in range(3))
            assert total == pytest.approx(1.0, abs=1e-6)
    assert not [t for t in scalars(plain) if t.startswith(("grad_variance/", "grad_share/"))]
    texts = [json.loads(line) for line in (measured / "metrics.jsonl").read_text().splitlines()]
    ranges = [t for t in texts if t["tag"] == "grad_variance/buckets"]
    assert len(ranges) == 1 and ranges[0]["text"].count("logSNR") == 3


def test_cadence_runs_the_gradient_variance_at_its_interval_and_the_last_step(root):
    from difftk.recipe import load_recipe
    from difftk.train.cadence import Cadence

    recipe = load_recipe(root / "recipes/toy2d.toml",
                         ["train.steps=10", "log.grad_variance_every=4"], warn=False)
    cadence = Cadence.of(recipe)
    assert [s for s in range(1, 11) if cadence.gradient_variance(s)] == [4, 8, 10]
    off = Cadence.of(load_recipe(root / "recipes/toy2d.toml", ["train.steps=10"], warn=False))
    assert not any(off.gradient_variance(s) for s in range(1, 11))


@pytest.mark.parametrize("setting, message", [
    ('log.eval_metrics=["nll", "fud"]', "log.eval_metrics.1"),
    ('log.eval_metrics=["nll", "nll"]', "names an entry twice"),
    ('log.grad_variance_targets=["run", "score"]', '"score" is not one of'),
    ("log.grad_variance_buckets=40", "at least twice grad_variance_buckets"),
])
def test_bad_log_fields_are_one_sentence(root, setting, message):
    res = runner.invoke(app, ["validate", str(root / "recipes/ddpm.toml"), "--set", setting])
    assert res.exit_code != 0
    assert message in res.stderr and "Traceback" not in res.stderr


def test_a_learned_variance_run_logs_the_gradient_its_head_receives(root, tmp_path):
    """Seed 003 §4.2-4.3 while training: the gradient w.r.t. sigma^2 (eq. 4.2, what the
    `learned` head receives) is that w.r.t. log sigma^2 (eq. 4.4) divided by sigma^2, which
    starts at beta_t: larger everywhere, by 1/beta_1 (here 50x or more) at the lowest noise;
    a fixed variance logs neither."""
    run, _ = train(root, "ddpm.toml", tmp_path, "learned", DDPM_TINY + [
        "train.steps=4", 'variance.name="learned"', 'loss.name="hybrid"'])
    logged = scalars(run)
    buckets = sorted({t.rsplit("/", 1)[1] for t in logged if "variance_gradient/variance/ln" in t},
                     key=lambda b: float(b.split("_")[2]))
    assert buckets and all(f"variance_gradient/log_variance/{b}" in logged for b in buckets)
    for b in buckets + ["all"]:
        d_var = logged[f"variance_gradient/variance/{b}"]
        d_log = logged[f"variance_gradient/log_variance/{b}"]
        head = logged[f"variance_gradient/head_output/{b}"]
        for step in d_var:
            assert head[step] == pytest.approx(d_var[step], rel=1e-5)  # the head outputs sigma^2
            assert d_var[step] >= d_log[step] > 0, (b, step)
    lowest = buckets[0]
    for step, value in logged[f"variance_gradient/variance/{lowest}"].items():
        assert value > 50 * logged[f"variance_gradient/log_variance/{lowest}"][step], step
    # the same measurement on the trained checkpoint, by step t
    png = tmp_path / "vg.png"
    res = runner.invoke(app, ["analyze", "variance-gradients", str(run), "--points", "4",
                              "--samples", "8", "-o", str(png), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    import csv

    rows = list(csv.DictReader(png.with_suffix(".csv").open()))
    assert [int(r["t"]) for r in rows] == sorted(int(r["t"]) for r in rows) and len(rows) >= 3
    for r in rows:
        assert float(r["median_abs_d_head_output"]) == pytest.approx(
            float(r["median_abs_d_variance"]), rel=1e-5)
        assert float(r["median_abs_d_variance"]) >= float(r["median_abs_d_log_variance"]) > 0
    assert png.stat().st_size > 0

    run, _ = train(root, "ddpm.toml", tmp_path, "fixed", DDPM_TINY + ["train.steps=2"])
    assert not [t for t in scalars(run) if t.startswith("variance_gradient/")]
    res = runner.invoke(app, ["analyze", "variance-gradients", str(run), "--device", "cpu",
                              "-o", str(tmp_path / "no.png")])
    assert res.exit_code == 1 and "needs a learned variance" in res.output
