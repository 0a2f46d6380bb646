"""The training loop (DESIGN.md, "A training step, as data flows").

noise level -> noise -> denoise -> weighted loss -> backward under the precision
policy -> unscale -> clip -> optimizer step -> EMA -> logging. Metrics accumulate on the
device and are read once per logging interval: no host sync per step.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch

from difftk.analysis.run_figures import log_run_figures
from difftk.data.batches import batch_stream
from difftk.diffusion.guidance import drop_labels
from difftk.errors import CheckpointError, DifftkError, TrainingDivergedError
from difftk.eval.figures import sample_figure, save_png
from difftk.recipe import Recipe, recipe_from_text
from difftk.train import checkpoint as ckpt_io
from difftk.train.assemble import assemble, data_spec, resolve_sigma_data
from difftk.train.ema import EmaModel
from difftk.train.interrupt import stop_if_interrupted
from difftk.train.nan_guard import NanGuard, NonFiniteTrainingError, nonfinite_injection
from difftk.train.run_logger import RunLogger
from difftk.train.runtime import Runtime

# Loss-by-noise-level buckets: ln(EDM sigma) in [-6, 6) split into 8 bins.
BUCKET_LO, BUCKET_WIDTH, BUCKETS = -6.0, 1.5, 8
# Settings that may change between an interrupted run and its resumption.
# Where the run lives (run.out_dir, run.name) is not part of what it computes: a copied
# or moved run resumes.
RESUMABLE = {("train", "steps"), ("train", "time_limit"), ("run", "device"),
             ("run", "out_dir"), ("run", "name")}


def _recipe_difference(a: dict, b: dict) -> str | None:
    for section in sorted(set(a) | set(b)):
        if section == "log":
            continue
        sa, sb = a.get(section, {}), b.get(section, {})
        for key in sorted(set(sa) | set(sb)):
            if (section, key) not in RESUMABLE and sa.get(key) != sb.get(key):
                return f"{section}.{key}"
    return None


class Trainer:
    def __init__(self, recipe: Recipe, runtime: Runtime, resume: bool = False,
                 progress: bool = True):
        self.runtime = runtime
        self.device = runtime.device
        self.progress = progress
        self.run_dir = Path(recipe.run.out_dir) / recipe.run.name
        self.ckpt_dir = self.run_dir / "checkpoints"
        resume_from = None
        if resume:
            if not ckpt_io.holds_checkpoints(self.ckpt_dir):
                raise CheckpointError(f"{self.run_dir}: nothing to resume (no checkpoints/latest)")
            resume_from = ckpt_io.load_intact(self.ckpt_dir)  # the newest intact one
        elif ckpt_io.holds_checkpoints(self.ckpt_dir):
            raise DifftkError(f"{self.run_dir} already holds a run; resume it with --resume or "
                              f"choose another name with --set run.name=NAME")

        self.data = recipe.parts["data"].load()
        recipe = resolve_sigma_data(recipe, self.data.sigma_data)
        if resume_from is not None:
            saved = recipe_from_text(resume_from.recipe_toml, source=str(resume_from.path))
            diff = _recipe_difference(saved.to_dict(), recipe.to_dict())
            if diff:
                raise CheckpointError(
                    f"{resume_from.path}: the run was trained with a different {diff}; resume "
                    f"with the same recipe or start a new run (--set run.name=NAME)")
        self.recipe = recipe
        self.spec = data_spec(recipe, self.data)
        self.asm = assemble(recipe, self.spec, self.device)
        self.model = self.asm.denoiser
        p = recipe.parts
        self.precision, self.clipping = p["precision"], p["clipping"]
        self.precision.prepare(self.device, self.model)  # backend flags; refuses what cannot run
        self.optimizer = p["optimizer"].build(self.model.parameters())
        self.base_lr = p["optimizer"].lr
        self.ema = EmaModel(self.model, p["ema"])
        self.scaler = self.precision.make_scaler(self.device)
        self.guard = NanGuard.from_settings(recipe.train)
        self.applied = True  # whether the last train_step changed the weights
        self._inject_nonfinite = nonfinite_injection()  # test hook, environment only
        self.forward = torch.compile(self.model) if recipe.train.compile else self.model

        seed = runtime.seed(recipe.run.seed)
        self.batches = batch_stream(self.data, recipe.train.batch_size, seed + 1, self.device)
        self.noise_gen = torch.Generator(self.device).manual_seed(seed + 2)
        self.step = 0
        if resume_from is not None:
            self._restore(resume_from)
        self.logger = RunLogger(self.run_dir / "tb",
                                runtime.is_main and recipe.log.tensorboard)

    # ---------------------------------------------------------------- state
    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"batches.{k}": v for k, v in self.batches.state().items()}
        out["noise"] = self.noise_gen.get_state()
        out["torch_cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":  # dropout on the GPU draws from the device's stream
            out["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return out

    def _restore(self, ck: ckpt_io.Checkpoint) -> None:
        try:
            self.model.load_state_dict(ck.tensors["model"])
            self.ema.load_state_dict(ck.tensors["ema"])
            self.ema.load_extra_state_dict(ck.tensors.get("ema_extra", {}))
            self.optimizer.load_state_dict(
                ckpt_io.optimizer_state(ck.tensors["optimizer"], ck.state["optimizer"]))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"{ck.path}: does not fit this recipe's model ({exc})") from None
        rng = ck.tensors["rng"]
        self.batches.load_state({k.split(".", 1)[1]: v for k, v in rng.items()
                                 if k.startswith("batches.")})
        self.noise_gen.set_state(rng["noise"])
        torch.set_rng_state(rng["torch_cpu"])
        if "torch_cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["torch_cuda"], self.device)
        if self.scaler is not None and "scaler" in ck.state:
            self.scaler.load_state_dict(ck.state["scaler"])
        self.guard.load_state_dict(ck.state.get("nan_guard", {}))
        self.step = ck.step

    def save(self) -> Path | None:
        if not self.runtime.is_main:
            return None
        opt_tensors, opt_meta = ckpt_io.optimizer_tensors(self.optimizer)
        state = {"step": self.step, "optimizer": opt_meta,
                 "spec": {"shape": list(self.spec.shape), "out_channels": self.spec.out_channels,
                          "num_classes": self.spec.num_classes},
                 "kind": self.data.kind}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        state["nan_guard"] = self.guard.state_dict()
        tensors = {"model": self.model.state_dict(), "ema": self.ema.state_dict(),
                   "optimizer": opt_tensors, "rng": self._rng_tensors()}
        if self.ema.extra_state_dict():
            tensors["ema_extra"] = self.ema.extra_state_dict()
        return ckpt_io.save_checkpoint(self.ckpt_dir, self.step, tensors, state,
                                       self.recipe.to_toml(), self.recipe.log.keep_last)

    # ---------------------------------------------------------------- pieces
    def _lr(self, step: int) -> float:
        warm = self.recipe.train.lr_warmup_steps
        lr = self.base_lr * min(1.0, (step + 1) / warm) if warm else self.base_lr
        return lr * self.guard.lr_scale  # lowered after each NaN-guard restore

    def _condition(self, labels):
        """The labels the network sees: none for an unconditional model; for a conditional
        one, a share ``train.label_dropout`` replaced by the null label (index num_classes)."""
        if not self.spec.num_classes or labels is None:
            return None
        return drop_labels(labels, self.recipe.train.label_dropout, self.spec.num_classes,
                           self.noise_gen)

    def train_step(self, x0, labels) -> tuple[torch.Tensor, object, torch.Tensor, torch.Tensor]:
        labels = self._condition(labels)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr(self.step)
        with self.precision.autocast(self.device):
            per_sample, levels = self.asm.objective(self.forward, x0, labels, self.noise_gen)
        loss = per_sample.float().mean()
        if self._inject_nonfinite is not None and self._inject_nonfinite(self.step + 1):
            loss = loss * float("nan")  # the NaN guard's test hook (DIFFTK_INJECT_NONFINITE)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # clip true gradients (seed 001 §12.3)
        else:
            loss.backward()
        norm_before, norm_after = self.clipping.clip_model(self.model)
        action = self._optimizer_step(loss, norm_before)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.applied:
            self.ema.update(self.model, self.step, x0.shape[0])
        if action == "restore":
            self._recover()
        return per_sample.detach(), levels, norm_before.detach(), norm_after.detach()

    def _optimizer_step(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> str:
        """Step unless the NaN guard (non-finite loss or gradients) or the loss scaler refuses.

        Sets ``self.applied``; returns the guard's verdict ("ok", "skip", "restore").
        """
        if self.guard.enabled:
            finite = torch.isfinite(loss)
            if self.scaler is None:  # under a scaler, gradient overflow is its business
                finite = finite & torch.isfinite(grad_norm)
            if not bool(finite):  # the one host sync per step the guard costs
                self.applied = False
                action = self.guard.bad(self.step + 1)
                if action == "stop":
                    raise NonFiniteTrainingError(self._stop_message())
                return action
            self.guard.good()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the step if the gradients overflowed
            self.scaler.update()
            self.applied = bool(torch.isfinite(grad_norm))
            self.guard.scaler_skipped += not self.applied
        else:
            self.optimizer.step()
            self.applied = True
        return "ok"

    def _last_checkpoint(self) -> Path | None:
        return ckpt_io.newest_intact(self.ckpt_dir)[0]  # verified, not just present

    def _stop_message(self) -> str:
        g = self.guard
        steps = g.bad_steps()
        kept = ckpt_io.describe_intact(self.ckpt_dir)
        if g.restores:
            return (f"the loss or gradients were non-finite for {g.bad_in_row} steps in a row "
                    f"({steps}) again after {g.restores} restore(s) with the learning rate "
                    f"lowered to {self._lr(self.step):.3g}; training stopped and {kept}")
        return (f"the loss or gradients were non-finite for {g.bad_in_row} steps in a row "
                f"({steps}) and there is no checkpoint to restore; training stopped and {kept}")

    def _recover(self) -> None:
        """Reload the last checkpoint's weights, optimizer, EMA and loss scale; lower the lr.

        The random streams run on, so the batches that failed are not replayed.
        """
        ck_dir = self._last_checkpoint()
        if ck_dir is None:
            raise NonFiniteTrainingError(self._stop_message())
        bad_steps = self.guard.bad_steps()
        ck = ckpt_io.load_checkpoint(ck_dir)
        counters = self.guard.state_dict()
        self.model.load_state_dict(ck.tensors["model"])
        self.ema.load_state_dict(ck.tensors["ema"])
        self.ema.load_extra_state_dict(ck.tensors.get("ema_extra", {}))
        self.optimizer.load_state_dict(
            ckpt_io.optimizer_state(ck.tensors["optimizer"], ck.state["optimizer"]))
        if self.scaler is not None and "scaler" in ck.state:
            self.scaler.load_state_dict(ck.state["scaler"])
        self.guard.load_state_dict(counters)  # the counters go on; they are not rolled back
        self.guard.restored()
        self.step = ck.step
        message = (f"non-finite loss or gradients at {bad_steps}: restored checkpoint "
                   f"{ck_dir.name} (step {ck.step}) and lowered the learning rate by "
                   f"{self.guard.lr_factor:g} to {self._lr(self.step):.3g}")
        print(f"difftk: {message}", file=sys.stderr)
        self.logger.text("nan_guard", message, self.step)

    def save_snapshot(self) -> Path | None:
        """Raw weights and every EMA profile under snapshots/<step>/, for post-hoc EMA."""
        if not self.runtime.is_main:
            return None
        rule = self.ema.rule
        groups = self.ema.snapshot(self.model)
        meta = {"step": self.step, "batch_size": self.recipe.train.batch_size,
                "ema": rule.name, "profiles": {name: rule.profile_metadata(name)
                                               for name in groups if name != "model"}}
        return ckpt_io.save_snapshot(self.run_dir / "snapshots", self.step, groups, meta)

    @torch.no_grad()
    def validation_loss(self, max_items: int = 512) -> float:
        x = self.data.heldout[:max_items].to(self.device)
        gen = torch.Generator(self.device).manual_seed(12345)  # the same draws every time
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for i in range(0, x.shape[0], 256):
            per_sample, _ = self.asm.objective(self.model, x[i:i + 256], None, gen)
            total += per_sample.sum()
        self.model.train()
        return float(total) / x.shape[0]

    @torch.no_grad()
    def draw_samples(self, n: int, seed: int = 0, labels=None) -> torch.Tensor:
        """n samples of the EMA model; a conditional model cycles through the classes
        unless ``labels`` are given."""
        gen = torch.Generator(self.device).manual_seed(seed)
        noise = torch.randn((n, *self.spec.shape), generator=gen, device=self.device)
        sampler = self.recipe.parts["sampler"]
        if labels is None and self.spec.num_classes:
            labels = torch.arange(n, device=self.device) % self.spec.num_classes
        return sampler.sample(self.ema.module, noise, gen, labels).x

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Sample metrics of the EMA model against the held-out split (eval/metrics.py);
        a conditional model draws the held-out labels, so the class mix matches."""
        from difftk.eval.metrics import sample_metrics

        n = self.recipe.log.eval_samples
        labels = self.data.heldout_labels
        if self.spec.num_classes and labels is not None:
            labels = labels.repeat(n // labels.shape[0] + 1)[:n].to(self.device)
        else:
            labels = None
        x = self.draw_samples(n, seed=1, labels=labels)
        return sample_metrics(x.cpu(), self.data.heldout, self.data.kind)

    def write_samples(self, tag: str) -> Path | None:
        if not self.runtime.is_main:
            return None
        x = self.draw_samples(self.recipe.log.num_samples)
        ref = self.data.heldout[:2000] if self.data.kind == "vector" else None
        image = sample_figure(x, ref)
        self.logger.image("samples", image, self.step)
        path = self.run_dir / "samples" / f"{tag}.png"
        save_png(image, path)
        return path

    # ---------------------------------------------------------------- loop
    def fit(self) -> Path:
        r = self.recipe
        if self.runtime.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt_io.write_text_atomic(self.run_dir / "recipe.toml", r.to_toml())
            self.logger.text("recipe", "```\n" + r.to_toml() + "\n```")
            if self.step == 0:
                log_run_figures(r, self.logger)
        dev = self.device
        loss_sum = torch.zeros((), device=dev)
        bucket_sum = torch.zeros(BUCKETS, device=dev)
        bucket_n = torch.zeros(BUCKETS, device=dev)
        norm_b = torch.zeros((), device=dev)
        norm_a = torch.zeros((), device=dev)
        clipped = torch.zeros((), device=dev)
        sigmas: list[torch.Tensor] = []
        n_in_window, t_window = 0, time.perf_counter()
        last_loss = math.nan
        self.model.train()
        from difftk.train.progress import training_progress

        t_start = time.perf_counter()
        with training_progress(r.train.steps, self.step, enabled=self.progress and
                               self.runtime.is_main) as bar:
            while self.step < r.train.steps:
                x0, labels = self.batches.next()
                per_sample, levels, nb, na = self.train_step(x0, labels)
                if self.applied:  # skipped steps (NaN guard, fp16 overflow) are counted, not averaged
                    log_sigma = torch.log(levels.sigma_edm.to(dev).float())
                    bucket = ((log_sigma - BUCKET_LO) / BUCKET_WIDTH).floor().clamp(0, BUCKETS - 1)
                    bucket_sum.index_add_(0, bucket.long(), per_sample.float())
                    bucket_n.index_add_(0, bucket.long(), torch.ones_like(per_sample, dtype=torch.float))
                    loss_sum += per_sample.float().mean()
                    norm_b += nb.to(dev)
                    norm_a += na.to(dev)
                    clipped += (na < nb * (1 - 1e-6)).float().to(dev)
                    sigmas.append(log_sigma)
                    n_in_window += 1
                step = self.step
                if n_in_window and (step % r.log.every == 0 or step == r.train.steps):
                    last_loss = self._flush(step, n_in_window, t_window, loss_sum, bucket_sum,
                                            bucket_n, norm_b, norm_a, clipped, sigmas,
                                            x0.shape[0])
                    for t in (loss_sum, bucket_sum, bucket_n, norm_b, norm_a, clipped):
                        t.zero_()
                    sigmas.clear()
                    n_in_window, t_window = 0, time.perf_counter()
                if r.log.val_every and (step % r.log.val_every == 0 or step == r.train.steps):
                    self.logger.scalar("loss/validation", self.validation_loss(), step)
                if r.log.eval_every and (step % r.log.eval_every == 0 or step == r.train.steps) \
                        and self.runtime.is_main:
                    for key, value in self.evaluate().items():
                        self.logger.scalar(f"eval/{key}", value, step)
                if r.log.sample_every and step % r.log.sample_every == 0 \
                        and step != r.train.steps:
                    self.write_samples(f"step_{step:08d}")
                if r.log.checkpoint_every and step % r.log.checkpoint_every == 0 \
                        and step != r.train.steps:
                    self.save()
                snapshot_every = self.ema.rule.snapshot_every
                if snapshot_every and step % snapshot_every == 0:
                    self.save_snapshot()
                bar.advance(step, last_loss)
                if r.train.time_limit and time.perf_counter() - t_start > 60 * r.train.time_limit:
                    break
                stop_if_interrupted()  # SIGINT/SIGTERM: the session saves and exits
        self.save()
        path = self.write_samples("final")
        self.logger.close()
        return path

    def _flush(self, step, n, t0, loss_sum, bucket_sum, bucket_n, norm_b, norm_a, clipped,
               sigmas, batch) -> float:
        """One host sync per logging interval: read the accumulators, write scalars."""
        loss = float(loss_sum) / n
        if not math.isfinite(loss):
            where = ckpt_io.describe_intact(self.ckpt_dir)
            raise TrainingDivergedError(
                f"the loss became non-finite between steps {step - n + 1} and {step}; {where}")
        elapsed = max(time.perf_counter() - t0, 1e-9)
        log = self.logger
        log.scalar("loss/train", loss, step)
        log.scalar("grad_norm/before_clip", float(norm_b) / n, step)
        log.scalar("grad_norm/after_clip", float(norm_a) / n, step)
        log.scalar("grad_norm/clipped_fraction", float(clipped) / n, step)
        log.scalar("lr", self.optimizer.param_groups[0]["lr"], step)
        log.scalar("images_per_second", n * batch / elapsed, step)
        if self.scaler is not None:
            log.scalar("loss_scale", float(self.scaler.get_scale()), step)
            log.scalar("precision/overflow_skipped_steps", self.guard.scaler_skipped, step)
        if self.guard.enabled:
            log.scalar("nan_guard/skipped_steps", self.guard.skipped, step)
            log.scalar("nan_guard/restores", self.guard.restores, step)
        sums, counts = bucket_sum.cpu(), bucket_n.cpu()
        for i in range(BUCKETS):
            if counts[i] > 0:
                lo = BUCKET_LO + i * BUCKET_WIDTH
                log.scalar(f"loss_by_sigma/ln_sigma_{lo:+.1f}_{lo + BUCKET_WIDTH:+.1f}",
                           float(sums[i] / counts[i]), step)
        if sigmas:
            log.histogram("ln_sigma_drawn", torch.cat(sigmas).cpu(), step)
        return loss
