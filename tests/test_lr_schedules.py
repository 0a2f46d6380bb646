"""Learning-rate schedules against their closed forms and reference implementations; the
recipe spelling, per-group rates, the trainer's lr and the lr-schedule figure."""

import csv
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difftk.cli import app
from difftk.errors import RecipeError
from difftk.optim.lr_schedule import TrainingClock
from difftk.optim.param_groups import parameter_groups, set_learning_rate
from difftk.recipe import load_recipe

runner = CliRunner()


def schedule(registry, name, **params):
    return registry.get("lr_schedules", name).cls(**params)


def factors(sched, steps, batch_size=1, total_steps=100):
    return [sched.factor(TrainingClock(s, batch_size, total_steps)) for s in steps]


# ------------------------------------------------------------------ closed forms
def test_constant_and_linear_warmup(registry):
    assert factors(schedule(registry, "constant"), [0, 7, 10**6]) == [1.0, 1.0, 1.0]
    # The first step takes 1/4 of the peak, step 4 (1-based) the peak: difftk's former
    # train.lr_warmup_steps, lr = peak * min(1, (step + 1) / warmup).
    assert factors(schedule(registry, "linear_warmup", warmup_steps=4), [0, 1, 2, 3, 4, 50]) == \
        [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_warms_up_then_decays_to_its_floor_at_the_end_of_the_run(registry):
    s = schedule(registry, "cosine", warmup_steps=10, min_lr_ratio=0.1)
    # total 110: the decay spans steps 10..110; p = 1/4 gives 0.1 + 0.9 (1 + cos(pi/4)) / 2.
    got = factors(s, [0, 4, 9, 10, 35, 60, 110, 500], total_steps=110)
    want = [0.1, 0.5, 1.0, 1.0, 0.1 + 0.9 * (1 + math.sqrt(0.5)) / 2, 0.55, 0.1, 0.1]
    assert got == pytest.approx(want, abs=1e-12)
    # An explicit horizon overrides train.steps.
    fixed = schedule(registry, "cosine", total_steps=50)
    assert factors(fixed, [25, 50], total_steps=1000) == pytest.approx([0.5, 0.0], abs=1e-12)


def test_cosine_and_linear_decay_match_torch_schedulers(registry):
    """Without warm-up they are CosineAnnealingLR(T_max=N, eta_min=r lr) and
    LinearLR(1, r, N) stepped once per optimizer step."""
    n, r = 40, 0.2

    def torch_lrs(make):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched, out = make(opt), []
        for _ in range(n + 5):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    steps = range(n + 5)
    cosine = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, n, eta_min=r))
    assert factors(schedule(registry, "cosine", min_lr_ratio=r), steps, total_steps=n)[:n + 1] \
        == pytest.approx(cosine[:n + 1], abs=1e-9)
    linear = torch_lrs(lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, r, n))
    assert factors(schedule(registry, "linear_decay", min_lr_ratio=r), steps, total_steps=n) \
        == pytest.approx(linear, abs=1e-9)


def test_step_is_torch_steplr_as_seed_004_uses_it(registry):
    """Seed 004: StepLR(step_size=20, gamma=0.1), here stepped once per optimizer step."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    ref = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.1)
    want = []
    for _ in range(70):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        ref.step()
    got = [0.01 * f for f in factors(schedule(registry, "step", step_size=20, gamma=0.1),
                                     range(70))]
    assert got == pytest.approx(want, rel=1e-12)
    assert factors(schedule(registry, "step", step_size=20, gamma=0.1), [0, 19, 20, 45]) == \
        pytest.approx([1.0, 1.0, 0.1, 0.01])


def edm2_learning_rate_schedule(cur_nimg, batch_size, ref_lr=100e-4, ref_batches=70e3,
                                rampup_Mimg=10):
    """EDM2's training/training_loop.py learning_rate_schedule, transcribed."""
    lr = ref_lr
    if ref_batches > 0:
        lr /= np.sqrt(max(cur_nimg / (ref_batches * batch_size), 1))
    if rampup_Mimg > 0:
        lr *= min(cur_nimg / (rampup_Mimg * 1e6), 1)
    return lr


def test_inverse_sqrt_is_edm2s_schedule_counted_in_images(registry):
    s = schedule(registry, "inverse_sqrt")  # EDM2's defaults: 70k batches, 10 Mimg ramp-up
    batch = 2048
    for step in (0, 1, 100, 4882, 4883, 50_000, 70_000, 70_001, 280_000, 1_000_000):
        want = edm2_learning_rate_schedule(step * batch, batch) / 100e-4
        assert s.factor(TrainingClock(step, batch, 10)) == pytest.approx(want, rel=1e-12), step
    # Closed form at chosen points, batch 1000: ramp over 10M images, t_ref = 70M images.
    assert factors(s, [0, 5000, 10_000, 70_000, 280_000], batch_size=1000) == \
        pytest.approx([0.0, 0.5, 1.0, 1.0, 0.5])
    small = schedule(registry, "inverse_sqrt", ref_batches=100, warmup_kimg=0)
    assert factors(small, [0, 100, 400, 10_000], batch_size=7) == pytest.approx([1, 1, 0.5, 0.1])


# ------------------------------------------------------------------ recipe spelling
def test_lr_warmup_steps_maps_onto_linear_warmup(root, tmp_path):
    old = (root / "recipes/toy2d.toml").read_text().replace(
        '[lr_schedule]\nname = "linear_warmup"\nwarmup_steps = 50\n', "").replace(
        "[train]\n", "[train]\nlr_warmup_steps = 50\n")
    assert "lr_warmup_steps = 50" in old and "[lr_schedule]" not in old
    path = tmp_path / "old.toml"
    path.write_text(old)
    r = load_recipe(path, warn=False)
    assert r.parts["lr_schedule"].name == "linear_warmup"
    assert r.parts["lr_schedule"].warmup_steps == 50
    assert "lr_warmup_steps" not in r.to_toml()
    assert load_recipe(path, ["train.lr_warmup_steps=0"], warn=False).parts[
        "lr_schedule"].name == "constant"
    with pytest.raises(RecipeError, match=r"train\.lr_warmup_steps: has moved to \[lr_schedule\]"):
        load_recipe(root / "recipes/toy2d.toml", ["train.lr_warmup_steps=10"], warn=False)


def test_the_issue_s_command_line_spelling_validates(root):
    r = load_recipe(root / "recipes/toy2d.toml", ['lr_schedule.name="cosine"',
                                                  "lr_schedule.warmup_steps=500"], warn=False)
    s = r.parts["lr_schedule"]
    assert (s.name, s.warmup_steps, s.total_steps) == ("cosine", 500, None)
    with pytest.raises(RecipeError, match="lr_schedule.min_lr_ratio"):
        load_recipe(root / "recipes/toy2d.toml", ['lr_schedule.name="cosine"',
                                                  "lr_schedule.min_lr_ratio=2"], warn=False)


# ------------------------------------------------------------------ parameter groups
def test_scorenet_declares_seed_004s_rate_for_rho(registry):
    from difftk.nn.architecture import DataSpec

    spec = DataSpec(shape=(1, 8, 8), out_channels=1)
    net = registry.get("architectures", "scorenet").cls(
        preset="small", mean_scaling=True, rho_lr_multiplier=20).build(spec)
    groups = parameter_groups(net)
    assert [(g["name"], g["lr_multiplier"]) for g in groups] == [("default", 1.0),
                                                                ("mean_scaling", 20.0)]
    assert groups[1]["params"] == [net.rho0, net.rho1]
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    opt = registry.get("optimizers", "adam").cls(lr=0.01).build(groups)
    set_learning_rate(opt, 0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.2])  # seed 004
    # A multiplier of 1 declares nothing different: one group, as before.
    plain = registry.get("architectures", "scorenet").cls(preset="small", mean_scaling=True)
    assert len(parameter_groups(plain.build(spec))) == 1


def test_trainer_sets_every_group_from_the_schedule(root, tmp_path):
    from difftk.run.runtime import make_runtime
    from difftk.train.trainer import Trainer

    r = load_recipe(root / "recipes/architectures/scorenet.toml", [
        f'run.out_dir="{tmp_path}"', 'model.preset="small"', "model.mean_scaling=true",
        "model.rho_lr_multiplier=20", 'lr_schedule.name="step"', "lr_schedule.step_size=2",
        "lr_schedule.gamma=0.5", "optimizer.lr=0.01", "train.batch_size=8", "train.steps=5",
        'precision.name="fp32"', "log.tensorboard=false"], warn=False)
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    seen = []
    for _ in range(5):
        x0, labels = trainer.batches.next()
        trainer.train_step(x0, labels)
        seen.append([g["lr"] for g in trainer.optimizer.param_groups])
    want = [[0.01 * 0.5 ** (c // 2), 0.2 * 0.5 ** (c // 2)] for c in range(5)]
    assert np.allclose(seen, want, rtol=1e-12)


# ------------------------------------------------------------------ figure
def test_plot_lr_schedule_writes_png_and_csv(root, tmp_path):
    png, table = tmp_path / "lr.png", tmp_path / "lr.csv"
    out = runner.invoke(app, ["plot", "lr-schedule", str(root / "recipes/toy2d.toml"), "-o",
                              str(png), "--csv", str(table), "--set", "train.steps=300",
                              "--set", 'lr_schedule.name="cosine"', "--set",
                              "lr_schedule.warmup_steps=30"])
    assert out.exit_code == 0, out.output
    assert png.stat().st_size > 0
    rows = list(csv.DictReader(table.open()))
    assert [int(row["step"]) for row in rows] == list(range(1, 301))
    lr = np.array([float(row["lr"]) for row in rows])
    assert lr[0] == pytest.approx(3e-3 / 30) and lr[29] == pytest.approx(3e-3)  # toy2d: 3e-3
    assert lr[-1] == pytest.approx(3e-3 * 0.5 * (1 + math.cos(math.pi * 269 / 270)))
    assert float(rows[1]["kimg"]) == pytest.approx(0.512)  # batch 512: one step seen
    bad = runner.invoke(app, ["plot", "lr-schedule", str(root / "recipes/toy2d.toml"),
                              "--set", 'lr_schedule.name="cosin"'])
    assert bad.exit_code != 0 and 'did you mean "cosine"' in bad.output
