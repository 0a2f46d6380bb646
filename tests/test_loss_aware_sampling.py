"""improved-diffusion's loss-aware resampler (Nichol & Dhariwal 2021 §3.3): its distribution
against a transcription of ``LossSecondMomentResampler``, its unbiasedness, and exact resume."""

import numpy as np
import pytest
import torch

from difftk.diffusion.loss_history import LossHistory
from difftk.plugins.noise_sampling import LossSecondMoment
from difftk.plugins.schedules import EDM, Linear, RectifiedFlow


class _ImprovedDiffusionResampler:
    """improved_diffusion/resample.py, LossSecondMomentResampler, transcribed (numpy)."""

    def __init__(self, num_timesteps, history_per_term=10, uniform_prob=0.001):
        self.history_per_term, self.uniform_prob = history_per_term, uniform_prob
        self._loss_history = np.zeros([num_timesteps, history_per_term], dtype=np.float64)
        self._loss_counts = np.zeros([num_timesteps], dtype=int)

    def weights(self):
        if not (self._loss_counts == self.history_per_term).all():
            return np.ones([len(self._loss_counts)], dtype=np.float64)
        weights = np.sqrt(np.mean(self._loss_history**2, axis=-1))
        weights /= np.sum(weights)
        weights *= 1 - self.uniform_prob
        weights += self.uniform_prob / len(weights)
        return weights

    def update_with_all_losses(self, ts, losses):
        for t, loss in zip(ts, losses, strict=True):
            if self._loss_counts[t] == self.history_per_term:
                self._loss_history[t, :-1] = self._loss_history[t, 1:]
                self._loss_history[t, -1] = loss
            else:
                self._loss_history[t, self._loss_counts[t]] = loss
                self._loss_counts[t] += 1


def test_history_and_probabilities_equal_improved_diffusions():
    rng = np.random.default_rng(0)
    ours, ref = LossHistory(20, 3), _ImprovedDiffusionResampler(20, 3, 0.01)
    for _ in range(40):
        ts = rng.integers(0, 20, size=16)
        losses = rng.exponential(1.0 + ts / 5.0)
        ours.pending = torch.from_numpy(ts)
        ours.observe(torch.from_numpy(losses))
        ref.update_with_all_losses(ts, losses)
        ref_w = ref.weights()
        expected = ref_w / ref_w.sum()  # improved-diffusion samples p = w / sum(w)
        assert np.allclose(ours.probabilities(0.01).numpy(), expected, rtol=1e-12)
    assert ours.warmed_up


def test_draws_follow_the_history_and_weights_keep_the_uniform_objective():
    """Warmed up on losses growing with t, the draws favour large t, each weighted
    (1 / T) / p_t, and E_q[w f(t)] equals the uniform-t mean of f."""
    schedule = Linear(T=50)
    sampler = LossSecondMoment(history=2)
    history = sampler.loss_history(schedule)
    t = torch.arange(50).repeat(2)
    history.pending = t
    history.observe((1.0 + t.double()) ** 2)
    assert history.warmed_up
    levels = sampler.sample(200_000, schedule, torch.Generator().manual_seed(0), "cpu", history)
    p = history.probabilities(sampler.uniform_share)
    assert torch.allclose(levels.weight.double(), (1 / 50) / p[levels.t.long() - 1], rtol=1e-6)
    assert float((levels.t > 25).double().mean()) > 0.7
    f = torch.sin(levels.t.double() / 7.0)
    uniform_mean = float(torch.sin(torch.arange(1, 51, dtype=torch.float64) / 7.0).mean())
    assert float((levels.weight.double() * f).mean()) == pytest.approx(uniform_mean, abs=0.01)
    assert history.pending.shape == (200_000,)


@pytest.mark.parametrize("schedule", [EDM(), RectifiedFlow()], ids=["edm", "rectified_flow"])
def test_a_continuous_axis_is_split_into_buckets(schedule):
    sampler = LossSecondMoment()
    assert sampler.bucket_count(schedule) == 100
    levels = sampler.sample(1000, schedule, torch.Generator().manual_seed(1), "cpu")
    assert torch.allclose(levels.weight, torch.ones(1000))  # uniform before warm-up
    t = schedule.time_from_log_snr(levels.log_snr.double())
    assert float(t.min()) >= 0 and float(t.max()) <= 1


def test_a_non_finite_batch_teaches_nothing_and_a_wrong_shape_is_refused():
    history = LossHistory(4, 2)
    history.pending = torch.tensor([0, 1])
    history.observe(torch.tensor([1.0, float("nan")]))
    assert int(history.counts.sum()) == 0
    other = LossHistory(5, 2)
    with pytest.raises(ValueError, match="does not fit"):
        other.load_state_dict(history.state_dict())


def test_resume_with_a_loss_history_is_bit_identical(root, tmp_path, monkeypatch):
    """The history is saved with the checkpoint: a run stopped by SIGTERM at step 10 and
    resumed ends with the weights and history of the uninterrupted run."""
    import signal

    from safetensors.torch import load_file

    from difftk.recipe import load_recipe
    from difftk.run.runtime import make_runtime
    from difftk.train import interrupt
    from difftk.train.interrupt import TrainingInterrupted
    from difftk.train.session import run_training
    from difftk.train.trainer import Trainer

    def recipe(name):
        sets = ['noise_sampling.name="loss_second_moment"', "noise_sampling.buckets=4",
                "noise_sampling.history=2", "model.width=16", "train.batch_size=32",
                "log.every=5", "log.checkpoint_every=0", "log.num_samples=4",
                "sampler.steps=2", "log.val_every=0", "log.tensorboard=false",
                "train.steps=20", f'run.out_dir="{tmp_path}"', f'run.name="{name}"']
        return load_recipe(root / "recipes/toy2d.toml", sets, warn=False)

    run_training(recipe("whole"), make_runtime("cpu"), progress=False)
    periodic = Trainer._periodic

    def sigterm_after_step_10(self, *args, **kwargs):
        out = periodic(self, *args, **kwargs)
        if self.step == 10:
            interrupt._received.append(signal.SIGTERM)
        return out

    monkeypatch.setattr(Trainer, "_periodic", sigterm_after_step_10)
    with pytest.raises(TrainingInterrupted):
        run_training(recipe("split"), make_runtime("cpu"), progress=False)
    monkeypatch.undo()
    run_training(recipe("split"), make_runtime("cpu"), "yes", progress=False)
    for group in ("model", "noise_history"):
        a = load_file(str(tmp_path / f"whole/checkpoints/latest/{group}.safetensors"))
        b = load_file(str(tmp_path / f"split/checkpoints/latest/{group}.safetensors"))
        for key in a:
            assert torch.equal(a[key], b[key]), (group, key)
    history = load_file(str(tmp_path / "whole/checkpoints/latest/noise_history.safetensors"))
    assert int(history["counts"].sum()) == 8 and float(history["losses"].min()) > 0
