"""A run that stops on time or early gives its best: the lr decay ends with the time limit,
the time budget survives a resume, and an EMA that is still mostly the initial network is
not what gets sampled."""

import json

import pytest
import torch

from difftk.optim.ema import INITIAL_SHARE_LIMIT, initial_share, too_young
from difftk.optim.lr_schedule import TrainingClock
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer


def rule(registry, family, name, **params):
    return registry.get(family, name).cls(**params)


# ------------------------------------------------------------------ lr decay against time
def test_decay_follows_the_larger_of_step_and_time_shares(registry):
    s = rule(registry, "lr_schedules", "linear_decay", warmup_steps=10)
    # 1000 planned steps, 20 taken, but 3/4 of the time used: progress 3/4 (warm-up done).
    assert s.factor(TrainingClock(20, 64, 1000, 0.75)) == pytest.approx(0.25)
    # During the warm-up the ramp multiplies the time share's decay: continuous in time.
    assert s.factor(TrainingClock(4, 64, 1000, 0.5)) == pytest.approx(0.5 * 0.5)
    # Steps ahead of time: the step share leads.
    assert s.factor(TrainingClock(910, 64, 1000, 0.1)) == pytest.approx(1 - 900 / 990)
    # The time limit ends the decay at its floor.
    cos = rule(registry, "lr_schedules", "cosine", min_lr_ratio=0.2)
    assert cos.factor(TrainingClock(5, 64, 10**6, 1.0)) == pytest.approx(0.2)
    # An explicit horizon is a number of steps and ignores the time.
    fixed = rule(registry, "lr_schedules", "linear_decay", total_steps=100)
    assert fixed.factor(TrainingClock(50, 64, 1000, 0.9)) == pytest.approx(0.5)


def test_time_limited_run_ends_its_decay_and_records_its_seconds(root, tmp_path):
    r = load_recipe(root / "recipes/toy2d.toml", [
        f'run.out_dir="{tmp_path}"', 'run.name="timed"', "log.val_every=0",
        "train.steps=1000000", "train.time_limit=0.05", "model.width=16",
        "log.num_samples=8", "sampler.steps=2", 'lr_schedule.name="linear_decay"',
        "lr_schedule.warmup_steps=0"], warn=False)
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    trainer.fit()
    assert 2 <= trainer.step < 1000000
    # By steps the decay has hardly begun; by time it is nearly over when the last step is
    # taken (its lr uses the time share measured after the step before it).
    assert trainer.optimizer.param_groups[0]["lr"] < 0.5 * r.parts["optimizer"].lr
    state = json.loads((tmp_path / "timed/checkpoints/latest/state.json").read_text())
    assert state["train_seconds"] >= 3  # 0.05 min


def test_resumed_run_counts_its_earlier_seconds(root, tmp_path):
    sets = [f'run.out_dir="{tmp_path}"', 'run.name="r"', "log.val_every=0", "model.width=16",
            "log.num_samples=8", "sampler.steps=2", "log.sample_every=0"]
    r = load_recipe(root / "recipes/toy2d.toml", [*sets, "train.steps=5"], warn=False)
    first = Trainer(r, make_runtime("cpu"), progress=False)
    first.fit()
    spent = first.state.train_seconds()
    r2 = load_recipe(root / "recipes/toy2d.toml", [*sets, "train.steps=6"], warn=False)
    again = Trainer(r2, make_runtime("cpu"), resume=True, progress=False)
    assert again.state.train_seconds() == pytest.approx(
        json.loads((tmp_path / "r/checkpoints/latest/state.json").read_text())["train_seconds"])
    assert 0 < again.state.train_seconds() <= spent


# ------------------------------------------------------------------ an EMA too young to sample
def test_initial_share_is_the_product_of_the_decays(registry):
    fixed = rule(registry, "ema", "ema", beta=0.999)
    assert initial_share(fixed, 281, 128) == pytest.approx(0.999 ** 281)
    assert initial_share(fixed, 281, 128) > 0.7  # three quarters the initial network
    assert initial_share(fixed, 3000, 128) < INITIAL_SHARE_LIMIT
    # Rules whose first update copies the weights never hold the initial network.
    for name in ("power", "ema_warmup", "none"):
        assert initial_share(rule(registry, "ema", name), 3, 128) == 0.0
    assert too_young(fixed, 3000, 128) is None
    assert "75%" in too_young(fixed, 281, 128)


def test_young_fixed_ema_samples_the_raw_weights(root, tmp_path, capsys):
    sets = [f'run.out_dir="{tmp_path}"', 'run.name="young"', "log.val_every=0",
            "model.width=16", "log.num_samples=16", "sampler.steps=2", "train.steps=20",
            'ema.name="ema"', "ema.beta=0.999"]
    trainer = Trainer(load_recipe(root / "recipes/toy2d.toml", sets, warn=False),
                      make_runtime("cpu"), progress=False)
    trainer.fit()
    assert "raw weights" in capsys.readouterr().err
    assert trainer.monitor.use_raw_weights
    # The grid's samples are the raw network's: equal to sampling the raw model directly.
    raw = trainer.monitor.draw_samples(16)
    trainer.monitor.use_raw_weights = False
    ema = trainer.monitor.draw_samples(16)
    trainer.monitor.use_raw_weights = True
    assert not torch.allclose(raw, ema)
    from difftk.run.assemble import restore

    restored = restore(tmp_path / "young", torch.device("cpu"))
    assert "raw weights" in capsys.readouterr().err
    for a, b in zip(restored.denoiser.state_dict().values(),
                    trainer.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
