"""The training loop (DESIGN.md, "A training step, as data flows").

recipe -> components -> Trainer. Each iteration takes batch k, runs one optimisation step
(train/step.py), acts on the NaN guard's verdict, adds the step to the metric window
(train/metric_window.py), and runs whatever the cadence (train/cadence.py) says is due:
log, validate, evaluate, sample, checkpoint (train/run_state.py), snapshot.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from difftk.analysis.run_figures import log_run_figures
from difftk.analysis.variance_gradients import VarianceGradientProbe
from difftk.data.batches import batch_stream, split_batch
from difftk.errors import DataUnavailable
from difftk.nn.auto_speed import maybe_compile
from difftk.optim.ema import EmaModel, too_young
from difftk.optim.lr_schedule import TrainingClock
from difftk.optim.param_groups import parameter_groups
from difftk.recipe import Recipe
from difftk.run import checkpoint as ckpt_io
from difftk.run.assemble import assemble, data_pixel_range, data_spec, resolve_sigma_data
from difftk.run.durable_files import write_text_atomic
from difftk.run.run_logger import RunLogger
from difftk.run.runtime import Runtime
from difftk.run.training_data import training_data
from difftk.train.cadence import Cadence
from difftk.train.draws import StepNoise
from difftk.train.init_from import load_initial_weights
from difftk.train.interrupt import stop_if_interrupted
from difftk.train.metric_window import MetricWindow
from difftk.train.monitor import Monitor
from difftk.train.nan_guard import NanGuard, NonFiniteTrainingError
from difftk.train.run_state import RunState, check_resumable, checkpoint_to_resume
from difftk.train.step import OptimisationStep, StepResult
from difftk.train.strategy import check_strategy, distribute


class Trainer:
    def __init__(self, recipe: Recipe, runtime: Runtime, resume: bool = False,
                 progress: bool = True):
        self.runtime = runtime
        self.device = runtime.device
        self.progress = progress
        self.run_dir = Path(recipe.run.out_dir) / recipe.run.name
        resume_from = checkpoint_to_resume(self.run_dir, resume)

        # Diffusion runs on the [latents] of the pixels (the pixels themselves by default);
        # sigma_data = "data" is then measured on the latents.
        trained_on = training_data(recipe, self.device)
        self.pixels, self.codec, self.data = trained_on.pixels, trained_on.codec, trained_on.data
        recipe = resolve_sigma_data(trained_on.recipe, self.data.sigma_data)
        if resume_from is not None:
            check_resumable(resume_from, recipe)
        self.recipe = recipe
        self.spec = data_spec(recipe, self.data)
        forward = self._build_network()
        self._build_step(forward)
        self.state = RunState(self.run_dir, recipe, self.spec, self.pixels.kind, runtime,
                              self.model, self.ema, self.optimizer, self.scaler, self.guard,
                              self.batches, self.optimisation_step.noise.history)
        if resume_from is not None:
            self.state.load(resume_from, streams=True)
            if runtime.is_main:  # which checkpoint, after a fall-back past a damaged one too
                print(f"difftk: resuming from {resume_from.path} (step {resume_from.step})",
                      file=sys.stderr)
        self.monitor = Monitor(self.model, self.ema.module, self.asm.objective,
                               recipe.parts["sampler"], self.data, self.spec, runtime,
                               lockstep=runtime.distributed and recipe.train.strategy == "fsdp",
                               codec=self.codec, pixels=self.pixels,
                               pixel_range=data_pixel_range(recipe, self.pixels.shape[1])
                               if self.pixels.kind == "image" else None)
        self.logger = RunLogger.for_recipe(recipe, self.run_dir, runtime.is_main)
        self.time_fraction = 0.0  # share of train.time_limit used, agreed by every rank

    def _build_network(self):
        """The denoiser, its EMA copies, precision policy and optimizer, spread over the
        processes by ``train.strategy``; returns the module the training forward goes through."""
        r, runtime, device = self.recipe, self.runtime, self.device
        p = r.parts
        self.asm = assemble(r, self.spec, device, training=True)
        torch.manual_seed(runtime.seed(r.run.seed))  # this rank's own stream (dropout)
        self.model = self.asm.denoiser
        load_initial_weights(self.asm)  # train.init_from, before the EMA copies the weights
        self.precision = p["precision"]
        self.precision.prepare(device, self.model)  # backend flags; refuses what cannot run
        self.scaler = self.precision.make_scaler(device)
        check_strategy(r.train.strategy, runtime, loss_scaled=self.scaler is not None)
        self.ema = EmaModel(self.model, p["ema"])  # before sharding: FSDP cannot be copied
        forward = distribute(self.model, r.train.strategy, runtime, also=self.ema.shadows.values())
        self.optimizer = p["optimizer"].build(parameter_groups(self.model))
        self.base_lr = p["optimizer"].lr
        return maybe_compile(forward, r.train.compile, device)

    def _build_step(self, forward) -> None:
        """This process's batches, the step's noise and the optimisation step."""
        r, runtime = self.recipe, self.runtime
        t, p = r.train, r.parts
        global_batch = split_batch(t.batch_size, self.data.train.shape[0], runtime.world_size,
                                   t.grad_accumulation)
        self.guard = NanGuard.from_settings(t, check_every=r.log.every)
        self.batches = batch_stream(self.data, t.batch_size, r.run.seed + 1, self.device,
                                    runtime.rank, runtime.world_size)
        noise = StepNoise(r.run.seed, global_batch, self.spec.shape, p["noise_sampling"],
                          p["schedule"], t.label_dropout if self.spec.num_classes else 0.0,
                          self.device, self.data.train.dtype, augmentation=p["augment"])
        # a learned variance: the gradient its head receives, by noise level (seed 003 §4.2)
        probe = VarianceGradientProbe(self.model) if self.model.variance.learned else None
        self.optimisation_step = OptimisationStep(
            self.model, forward, self.asm.objective, self.optimizer, self.precision, self.scaler,
            p["clipping"], self.ema, self.guard, self.spec.num_classes, noise, runtime,
            t.grad_accumulation, variance_probe=probe)

    @property
    def step(self) -> int:
        """Optimizer steps taken (and counted by the NaN guard) so far."""
        return self.state.step

    @step.setter
    def step(self, value: int) -> None:
        self.state.step = value

    def _lr(self, step: int) -> float:
        """The peak lr x the [lr_schedule] factor, a pure function of ``step`` (exact on resume)."""
        clock = TrainingClock(step, self.recipe.train.batch_size, self.recipe.train.steps,
                              self.time_fraction)
        lr = self.base_lr * self.recipe.parts["lr_schedule"].factor(clock)
        return lr * self.guard.lr_scale  # lowered after each NaN-guard restore

    def train_step(self, x0, labels) -> StepResult:
        """One optimisation step; then the NaN guard's verdict is acted on."""
        result = self.optimisation_step(x0, labels, self.step, self._lr(self.step))
        self.step += 1
        if result.verdict == "stop":
            raise NonFiniteTrainingError(self._stop_message())
        if result.verdict == "restore":
            self._recover()
        return result

    def _stop_message(self) -> str:
        g = self.guard
        steps = g.bad_steps()
        kept = ckpt_io.describe_intact(self.state.ckpt_dir)  # checked, not assumed
        if g.restores:
            return (f"the loss or gradients were non-finite for {g.bad_in_row} steps in a row "
                    f"({steps}) again after {g.restores} restore(s) with the learning rate "
                    f"lowered to {self._lr(self.step - 1):.3g}; training stopped and {kept}")
        return (f"the loss or gradients were non-finite for {g.bad_in_row} steps in a row "
                f"({steps}) and there is no checkpoint to restore; training stopped and {kept}")

    def _recover(self) -> None:
        """Reload the last checkpoint's weights, optimizer, EMA and loss scale; lower the lr.

        The random streams run on, so the batches that failed are not replayed.
        """
        from difftk.run.checkpoint import load_checkpoint

        ck_dir = self.state.last_checkpoint()
        if ck_dir is None:
            raise NonFiniteTrainingError(self._stop_message())
        bad_steps = self.guard.bad_steps()
        ck = load_checkpoint(ck_dir)
        self.state.load(ck, streams=False)
        self.guard.restored()
        message = (f"non-finite loss or gradients at {bad_steps}: restored checkpoint "
                   f"{ck_dir.name} (step {ck.step}) and lowered the learning rate by "
                   f"{self.guard.lr_factor:g} to {self._lr(self.step):.3g}")
        print(f"difftk: {message}", file=sys.stderr)
        self.logger.text("nan_guard", message, self.step)

    def save(self) -> Path | None:
        """A checkpoint (every process calls this; rank 0 writes; the others wait for it)."""
        return self.state.save()

    def _choose_sampled_weights(self) -> None:
        """The EMA copy, unless it is still mostly the initial network (optim/ema.py): then
        the raw weights, said once on stderr and in TensorBoard."""
        why = too_young(self.ema.rule, self.step, self.recipe.train.batch_size)
        if why is not None and not self.monitor.use_raw_weights and self.runtime.is_main:
            print(f"difftk: {why}", file=sys.stderr)
            self.logger.text("ema", why, self.step)
        self.monitor.use_raw_weights = why is not None

    def write_samples(self, tag: str) -> Path | None:
        """A sample grid (drawn in shards by every process; rank 0 writes it)."""
        self._choose_sampled_weights()
        return self.monitor.write_samples(self.recipe.log.num_samples,
                                          self.run_dir / "samples" / f"{tag}.png",
                                          self.logger, self.step)

    def _window_scalars(self) -> dict[str, float]:
        """The host-side scalars logged beside the window's means."""
        out = {"lr": self.optimizer.param_groups[0]["lr"]}
        if self.scaler is not None:
            out["loss_scale"] = float(self.scaler.get_scale())
            out["precision/overflow_skipped_steps"] = self.guard.scaler_skipped
        if self.guard.enabled:
            out["nan_guard/skipped_steps"] = self.guard.skipped
            out["nan_guard/restores"] = self.guard.restores
        return out

    def _start_run_directory(self) -> None:
        r = self.recipe
        if self.runtime.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.run_dir / "recipe.toml", r.to_toml())
            self.logger.text("recipe", "```\n" + r.to_toml() + "\n```")
            if self.step == 0:
                log_run_figures(r, self.logger)

    def fit(self) -> Path | None:
        """Train to ``train.steps`` (or ``train.time_limit``); the final checkpoint and grid."""
        from difftk.train.progress import training_progress

        self._start_run_directory()
        window = MetricWindow(self.runtime, self.optimisation_step.noise.batch_size)
        last_loss = math.nan
        self.model.train()
        cadence = Cadence.of(self.recipe)
        self.state.start_clock()
        time_left = max(cadence.time_limit_s - self.state.train_seconds(), 0.0) \
            if cadence.time_limit_s else 0.0
        with training_progress(cadence.steps, self.step,
                               enabled=self.progress and self.runtime.is_main,
                               every=self.recipe.log.every,
                               batch_size=self.recipe.train.batch_size,
                               time_left_s=time_left) as bar:
            while self.step < cadence.steps:
                x0, labels = self._next_batch()
                result = self.train_step(x0, labels)
                window.add(result)  # skipped steps add nothing
                flushed = self._periodic(cadence, window)
                last_loss = last_loss if flushed is None else flushed
                bar.advance(self.step, last_loss)
                if cadence.time_limit_s:
                    used = self.state.train_seconds() / cadence.time_limit_s
                    self.time_fraction = self.runtime.max_float(used)
                    if self.time_fraction >= 1:
                        break
                stop_if_interrupted(self.runtime)  # SIGINT/SIGTERM: train/session.py saves and exits
        self.save()
        path = self.write_samples("final")
        self.logger.close()
        return path

    def _next_batch(self):
        """This process's slice of the next batch; a data set that can no longer be read
        (a shard or file gone mid-run) stops the run with a checkpoint to resume from."""
        try:
            return self.batches.next()
        except DataUnavailable as exc:
            path = self.save()
            saved = f"saved checkpoint {path}" if path is not None else "rank 0 saved a checkpoint"
            raise DataUnavailable(f"{exc}; training stopped after step {self.step} and {saved}; "
                                  "run the same command with --resume once the data can be read "
                                  "again") from None

    def _periodic(self, cadence: Cadence, window: MetricWindow) -> float | None:
        """Run what falls due after this step; the mean loss of a flushed window, if any."""
        step, flushed = self.step, None
        if window.steps and cadence.log(step):
            flushed = window.flush(step, self.logger, self._window_scalars(),
                                   self.state.ckpt_dir)
        if cadence.validate(step):
            self.logger.scalar("loss/validation", self.monitor.validation_loss(), step)
        if cadence.evaluate(step):
            self._choose_sampled_weights()
            for key, value in self.monitor.evaluate(self.recipe.log).items():
                self.logger.scalar(f"eval/{key}", value, step)
        if cadence.gradient_variance(step):
            self.monitor.gradient_variance(self.recipe, step, self.logger)
        if cadence.samples(step):
            self.write_samples(f"step_{step:08d}")
        if cadence.checkpoint(step):
            self.save()
        if cadence.snapshot(step):
            self.state.save_snapshot()
        return flushed
