"""Conditional sampling and classifier-free guidance on the closed-form 2-D mixture."""

import pytest
import torch

from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.label_dropout import drop_labels
from difftk.diffusion.sampler_model import cfg_combine
from difftk.eval.generate import cycle_labels
from difftk.plugins.samplers import DDIM, DDPM, DPMpp2M, Euler, EulerAncestral, Heun
from difftk.plugins.schedules import EDM, Linear
from difftk.plugins.targets import X0
from difftk.plugins.variance import FixedSmall
from difftk.testing.denoisers import MixtureIdealNet, mixture_denoiser

ALL = [Heun(steps=12), Euler(steps=24), EulerAncestral(steps=24), DPMpp2M(steps=12),
       DDIM(steps=24), DDPM(steps=24)]


def _draw(sampler, denoiser, labels, n=1000, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 2, generator=g)
    return sampler.sample(denoiser, noise, g, cycle_labels(labels, n, "cpu"))


def test_labels_from_one_class_a_list_or_a_tensor():
    assert cycle_labels(None, 4, "cpu") is None
    assert cycle_labels(3, 4, "cpu").tolist() == [3, 3, 3, 3]
    assert cycle_labels([0, 1, 2], 5, "cpu").tolist() == [0, 1, 2, 0, 1]
    assert cycle_labels(torch.tensor([1, 0]), 3, "cpu").tolist() == [1, 0, 1]


def test_guidance_combination_runs_in_fp32_whatever_the_inputs():
    """Seed 001 §12.4: D_u + s (D_c - D_u) in fp32; in bf16 the subtraction of close values
    loses the difference the scale amplifies."""
    g = torch.Generator().manual_seed(0)
    uncond = torch.randn(1000, generator=g)
    cond = uncond + 1e-2 * torch.randn(1000, generator=g)
    c16, u16 = cond.bfloat16(), uncond.bfloat16()
    out = cfg_combine(c16, u16, 7.5)
    assert out.dtype == torch.float32
    exact = u16.float() + 7.5 * (c16.float() - u16.float())
    assert torch.equal(out, exact)
    low = u16 + 7.5 * (c16 - u16)  # what bf16 arithmetic would give
    assert float((low.float() - exact).abs().max()) > 5e-3  # 7 % of the guidance term
    assert torch.equal(cfg_combine(cond, uncond, 0.0), uncond)
    assert torch.equal(cfg_combine(cond, uncond, 1.0), cond)


@pytest.mark.parametrize("sampler", ALL, ids=lambda s: s.name)
def test_scale_zero_is_the_unconditional_sampler_and_scale_one_the_conditional(sampler):
    schedule = Linear()
    den = mixture_denoiser(schedule)
    uncond = _draw(sampler, den, None)
    zero = _draw(sampler.model_copy(update={"guidance": 0.0}), den, 0)
    assert torch.equal(zero.x, uncond.x) and zero.nfe == uncond.nfe
    cond = _draw(sampler, den, 0)  # guidance 1: the conditional model, one call per step
    assert cond.nfe == uncond.nfe
    assert float((cond.x[:, 0] < 0).float().mean()) > 0.99  # component 0 sits at x = -1.5


class _GuidedInClosedForm(torch.nn.Module):
    """D_u + s (D_c - D_u) of the mixture written out in float64, labels baked in."""

    def __init__(self, net: MixtureIdealNet, label: int, scale: float):
        super().__init__()
        self.net, self.label, self.scale = net, label, scale

    def forward(self, x, time, labels=None):
        lab = torch.full((x.shape[0],), self.label)
        c, u = self.net(x, time, lab).double(), self.net(x, time, None).double()
        return (u + self.scale * (c - u)).float()


@pytest.mark.parametrize("sampler", [Heun(steps=12), DDPM(steps=24), DPMpp2M(steps=12)],
                         ids=lambda s: s.name)
def test_guided_sampler_equals_sampling_the_closed_form_guided_denoiser(sampler):
    schedule = Linear()
    den = mixture_denoiser(schedule)
    guided = _draw(sampler.model_copy(update={"guidance": 2.5}), den, 1)
    closed = Denoiser(_GuidedInClosedForm(den.net, 1, 2.5), schedule, X0(), FixedSmall())
    reference = _draw(sampler, closed, None)
    assert guided.nfe == 2 * reference.nfe  # a guided evaluation is two network calls
    assert torch.allclose(guided.x, reference.x, atol=1e-4)


@pytest.mark.parametrize("schedule", [EDM(), Linear()], ids=["edm", "linear"])
def test_a_guided_samples_class_is_its_label(schedule):
    """With the weights 30/70 the minority class still wins every sample it is asked for."""
    den = mixture_denoiser(schedule)
    labels = torch.arange(1000) % 2
    x = _draw(Heun(steps=18, guidance=3.0), den, labels).x
    predicted = (x[:, 0] > 0).long()  # component 1 sits at x = +1.5
    assert float((predicted == labels).float().mean()) > 0.99


def test_label_dropout_replaces_the_requested_share_by_the_null_label():
    labels = torch.randint(0, 10, (20000,), generator=torch.Generator().manual_seed(0))
    dropped = drop_labels(labels, 0.2, 10, torch.Generator().manual_seed(1))
    null = dropped == 10
    assert float(null.float().mean()) == pytest.approx(0.2, abs=0.01)
    assert torch.equal(dropped[~null], labels[~null])
    assert torch.equal(drop_labels(labels, 0.0, 10, torch.Generator()), labels)


def test_conditional_run_trains_evaluates_and_samples_a_label_end_to_end(root, tmp_path):
    """digits with class labels: label dropout in training, metrics in TensorBoard every N
    steps, then difftk eval (metrics, --speed, --nll) and difftk sample --label."""
    import json

    from typer.testing import CliRunner

    from difftk.cli import app

    runner = CliRunner()
    sets = [f'run.out_dir="{tmp_path}"', 'run.name="cond"', "train.steps=4",
            "train.batch_size=16", "model.channels=8", "model.channel_mult=[1]",
            "model.num_res_blocks=1", "model.attention_resolutions=[]",
            "train.class_conditional=true", "train.label_dropout=0.2", "log.eval_every=2",
            "log.eval_samples=20", "log.val_every=0", "log.num_samples=4", "sampler.steps=3",
            'precision.name="fp32"', "schedule.T=50"]
    args = ["train", str(root / "recipes/ddpm.toml"), "--no-progress"]
    for item in sets:
        args += ["--set", item]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    run = tmp_path / "cond"
    state = json.loads((run / "checkpoints/latest/state.json").read_text())
    assert state["spec"]["num_classes"] == 10
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    fid = events.Scalars("eval/pixel_fid")
    assert [e.step for e in fid] == [2, 4] and all(e.value > 0 for e in fid)

    out = runner.invoke(app, ["eval", str(run), "-n", "10", "--speed", "--samplers",
                              "ddpm,heun", "--steps", "3", "--guidance", "2", "--nll",
                              "--nll-samples", "4", "--json", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["metrics"]["pixel_fid"] > 0 and report["nfe_per_image"] == 6  # guided
    speed = {row["sampler"]: row for row in report["speed"]}
    assert speed["heun"]["nfe_per_image"] == 2 * (2 * 3 - 1)
    assert speed["ddpm"]["nfe_per_image"] == 6 and speed["ddpm"]["images_per_second"] > 0
    assert report["nll"]["nll_bpd"] > 0

    png = tmp_path / "s.png"
    out = runner.invoke(app, ["sample", str(run), "--label", "3", "--label", "7", "-n", "4",
                              "--guidance", "2", "--steps", "3", "-o", str(png)])
    assert out.exit_code == 0, out.output
    assert png.exists()
    out = runner.invoke(app, ["sample", str(run), "--label", "12", "-n", "2", "-o", str(png)])
    assert out.exit_code == 1 and "0..9" in out.output


def test_label_dropout_without_class_labels_is_a_recipe_error(root):
    from difftk.errors import RecipeError
    from difftk.recipe import load_recipe

    with pytest.raises(RecipeError, match="label_dropout needs class_conditional = true"):
        load_recipe(root / "recipes/toy2d.toml", ["train.label_dropout=0.1"], warn=False)


class _Fixed(torch.nn.Module):
    """A network that answers x0 = c x_t + d: two of them differ in a known way."""

    def __init__(self, c: float, d: float):
        super().__init__()
        self.c, self.d = c, d

    def forward(self, x, time, labels=None):
        return self.c * x + self.d


def test_autoguidance_is_the_guide_plus_s_times_the_difference():
    """Karras et al. 2024a eq. 1: D_w = D_0 + w (D_1 - D_0), D_0 the weaker model, both
    conditional; w = 1 is the main model alone, in one evaluation per step."""
    from difftk.diffusion.grids import Level
    from difftk.diffusion.sampler_model import GuidedModel

    schedule = EDM()
    main = Denoiser(_Fixed(0.5, 0.2), schedule, X0(), FixedSmall())
    weak = Denoiser(_Fixed(0.3, -0.1), schedule, X0(), FixedSmall())
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(8, dtype=torch.long)
    model = GuidedModel(main, labels, 2.5, guide=weak)
    out = model(x, Level(1.0, 0.7)).x0
    d1, d0 = 0.5 * x + 0.2, 0.3 * x - 0.1
    assert torch.allclose(out, d0 + 2.5 * (d1 - d0), atol=1e-6) and model.nfe == 2
    alone = GuidedModel(main, labels, 1.0, guide=weak)
    assert torch.allclose(alone(x, Level(1.0, 0.7)).x0, d1, atol=1e-6) and alone.nfe == 1


def test_guidance_interval_guides_only_inside_its_sigma_range():
    """Kynkaanniemi et al. 2024: outside [sigma_lo, sigma_hi] the scale is 1 (one call); an
    interval holding no grid level samples as the conditional model does."""
    schedule = Linear()
    den = mixture_denoiser(schedule)
    sampler = Heun(steps=12, guidance=3.0)
    plain = _draw(sampler.model_copy(update={"guidance": 1.0}), den, 1)
    empty = _draw(sampler.model_copy(update={"guidance_sigma_min": 1e3,
                                             "guidance_sigma_max": 1e4}), den, 1)
    assert torch.equal(empty.x, plain.x) and empty.nfe == plain.nfe
    sigmas = sampler.noise_levels(schedule).sigma_edm[:-1]
    lo, hi = 0.5, 5.0
    inside = int(((sigmas >= lo) & (sigmas <= hi)).sum())
    some = _draw(sampler.model_copy(update={"guidance_sigma_min": lo,
                                            "guidance_sigma_max": hi}), den, 1)
    full = _draw(sampler, den, 1)
    assert 0 < inside < len(sigmas)
    assert plain.nfe < some.nfe < full.nfe
    assert not torch.equal(some.x, full.x) and not torch.equal(some.x, plain.x)
    with pytest.raises(ValueError, match="guidance_sigma_min must not exceed"):
        Heun(guidance_sigma_min=2.0, guidance_sigma_max=1.0)


def test_sample_and_eval_guide_with_an_earlier_checkpoint(root, tmp_path):
    """difftk sample / eval --guide: the run's step-4 checkpoint guides its final weights; a
    guide of another schedule is refused in one sentence."""
    import json

    from typer.testing import CliRunner

    from difftk.cli import app

    runner = CliRunner()
    base = ["train.steps=8", "train.batch_size=16", "model.channels=8", "model.channel_mult=[1]",
            "model.num_res_blocks=1", "log.val_every=0", "log.sample_every=0",
            "log.checkpoint_every=4", "log.num_samples=4", 'precision.name="fp32"',
            f'run.out_dir="{tmp_path}"']

    def train(name, *extra):
        args = ["train", str(root / "recipes/edm.toml"), "--no-progress"]
        for item in [*base, f'run.name="{name}"', *extra]:
            args += ["--set", item]
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output

    train("main")
    train("other", 'schedule.name="ve"')
    run = tmp_path / "main"
    early = run / "checkpoints/00000004"
    png = tmp_path / "g.png"
    out = runner.invoke(app, ["sample", str(run), "--guide", str(early), "--guidance", "2",
                              "--steps", "3", "-n", "4", "-o", str(png)])
    assert out.exit_code == 0, out.output
    assert png.exists() and "(10 network evaluations each)" in out.output  # 2 (2*3 - 1)
    out = runner.invoke(app, ["eval", str(run), "--guide", str(early), "--guidance", "2",
                              "--steps", "3", "-n", "8", "--json", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["guide"] == str(early) and report["nfe_per_image"] == 10
    out = runner.invoke(app, ["sample", str(run), "--guide", str(tmp_path / "other"), "-n", "2",
                              "-o", str(png)])
    assert out.exit_code == 1
    assert "the guiding model has the schedule \"ve\"" in out.output
