"""The library's own training step, built as ``Trainer`` builds it (train/trainer.py).

The bench needs the step without a run directory and on data it chooses (random tensors of
a given shape, so difftk, the raw loop and diffusers see the same kind of batch), so the
parts are put together here the way the trainer puts them together: assemble, precision,
optimizer, EMA, NaN guard, noise draws, ``OptimisationStep``; then each step takes the next
batch, runs the step, adds it to the metric window and flushes the window every
``log.every`` steps, as ``Trainer.fit`` does (with TensorBoard off).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from difftk.data.batches import batch_stream, split_batch
from difftk.data.dataset import DataBundle
from difftk.nn.auto_speed import maybe_compile
from difftk.optim.ema import EmaModel
from difftk.recipe import Recipe
from difftk.run.assemble import assemble, data_spec, resolve_sigma_data
from difftk.run.run_logger import RunLogger
from difftk.run.runtime import Runtime
from difftk.train.draws import StepNoise
from difftk.train.metric_window import MetricWindow
from difftk.train.nan_guard import NanGuard
from difftk.train.step import OptimisationStep


class DifftkLoop:
    """One subject of the bench: ``step()`` is one iteration of the training loop."""

    name = "difftk"

    def __init__(self, recipe: Recipe, data: DataBundle, device: torch.device, batch: int):
        recipe = resolve_sigma_data(recipe, data.sigma_data)
        self.recipe, self.device, self.batch = recipe, device, batch
        t, p = recipe.train, recipe.parts
        runtime = Runtime(device)
        split_batch(batch, batch, 1, t.grad_accumulation)
        self.spec = data_spec(recipe, data)
        self.assembly = assemble(recipe, self.spec, device)
        self.model = self.assembly.denoiser
        self.precision = p["precision"]
        self.precision.prepare(device, self.model)
        scaler = self.precision.make_scaler(device)
        forward = maybe_compile(self.model, t.compile, device)
        self.optimizer = p["optimizer"].build(self.model.parameters())
        self.lr = p["optimizer"].lr
        self.ema = EmaModel(self.model, p["ema"])
        self.batches = batch_stream(data, batch, recipe.run.seed + 1, device)
        noise = StepNoise(recipe.run.seed, batch, self.spec.shape, p["noise_sampling"],
                          p["schedule"], t.label_dropout if self.spec.num_classes else 0.0,
                          device, data.train.dtype)
        self.step_fn = OptimisationStep(
            self.model, forward, self.assembly.objective, self.optimizer, self.precision, scaler,
            p["clipping"], self.ema, NanGuard.from_settings(t, check_every=recipe.log.every),
            self.spec.num_classes, noise, runtime, t.grad_accumulation)
        self.window = MetricWindow(runtime, batch)
        self._logs = tempfile.TemporaryDirectory(prefix="difftk-bench-")
        self.logger = RunLogger.for_recipe(recipe, Path(self._logs.name), False)
        self.log_every = recipe.log.every
        self.steps_taken = 0

    def next_batch(self):
        return self.batches.next()

    def train_step(self, x0, labels):
        result = self.step_fn(x0, labels, self.steps_taken, self.lr)
        self.steps_taken += 1
        return result

    def log(self, result) -> None:
        """What the loop does after a step: the metric window, flushed at the log cadence."""
        self.window.add(result)  # skipped steps add nothing
        if self.window.steps and self.steps_taken % self.log_every == 0:
            self.window.flush(self.steps_taken, self.logger,
                              {"lr": self.optimizer.param_groups[0]["lr"]}, None)

    def step(self) -> None:
        x0, labels = self.next_batch()
        self.log(self.train_step(x0, labels))

    @property
    def low_precision(self) -> bool:
        return self.precision.autocast_dtype(self.device) in (torch.bfloat16, torch.float16)

    def x_example(self, n: int) -> torch.Tensor:
        """n network inputs of the data's shape (for FLOP counts of a baseline's network)."""
        return torch.zeros((n, *self.spec.shape), device=self.device)
