"""What a run looks at while it trains: validation loss, sample grids, the learning-curve
metrics of ``log.eval_metrics`` and the gradient variance by noise level.

Samples come from the EMA model through ``eval/generate.py``, as ``difftk sample`` and
``difftk eval`` draw them; the validation loss, the NLL bound and mean MSE (eval/nll.py, on
the EMA model, as ``difftk eval --nll`` scores it) and the gradient variance use fixed items
and fixed draws, so their curves move only with the weights.

All but the gradient variance (rank 0 alone: a few dozen backward passes) are cut into
fixed chunks, each with its own seed, shared out over the processes
(chunk c on rank c mod world size) and summed or gathered: every process works, and the
numbers and images do not depend on how many processes drew them. Only rank 0 writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from difftk.data.batches import mix_seed
from difftk.data.dataset import DataBundle
from difftk.diffusion.pixel_range import UNIT_RANGE
from difftk.eval.figures import sample_figure, save_png
from difftk.eval.generate import generate
from difftk.latents.latents import decode_fp32
from difftk.nn.architecture import DataSpec
from difftk.run.run_logger import RunLogger
from difftk.run.runtime import Runtime

VALIDATION_SEED = 12345  # the same validation draws at every evaluation
BOUND_SEED = 23456  # the same noise for the NLL bound and mean MSE at every evaluation
CHUNK = 256  # items per chunk of validation or sampling work


def chunks(n: int, runtime: Runtime, lockstep: bool = False) -> list[tuple[int | None, slice]]:
    """(index, items) of the chunks of n items that this process works on. In ``lockstep``
    (FSDP: each forward pass gathers the weights with every process) a process with one
    chunk fewer than the others repeats chunk 0 with index None, whose result is dropped."""
    count = -(-n // CHUNK)
    mine = [(c, slice(c * CHUNK, min(n, (c + 1) * CHUNK)))
            for c in range(runtime.rank, count, runtime.world_size)]
    if lockstep and len(mine) < -(-count // runtime.world_size):
        mine.append((None, slice(0, min(n, CHUNK))))
    return mine


class Monitor:
    def __init__(self, model, ema_module, objective, sampler, data: DataBundle, spec: DataSpec,
                 runtime: Runtime, lockstep: bool = False, codec=None,
                 pixels: DataBundle | None = None, pixel_range=None):
        self.model, self.ema_module, self.objective = model, ema_module, objective
        # Samples are drawn in the [latents] space of ``data`` and decoded (fp32) to be
        # compared with, and drawn as, ``pixels`` (the same bundle in pixel space).
        self.codec, self.pixels = codec, pixels if pixels is not None else data
        self.lockstep = lockstep
        # Where the decoded pixels' black and white lie (metrics and grids); [-1, 1] if None.
        self.pixel_range = pixel_range or UNIT_RANGE
        self.sampler, self.data, self.spec = sampler, data, spec
        self.runtime, self.device = runtime, runtime.device
        self.use_raw_weights = False  # set while the EMA is too young to sample (optim/ema.py)
        self._told: set[str] = set()  # notes already printed (each is said once per run)

    def _note_once(self, key: str, message: str) -> None:
        if key not in self._told and self.runtime.is_main:
            print(f"difftk: {message}", file=sys.stderr)
        self._told.add(key)

    @torch.no_grad()
    def validation_loss(self, max_items: int = 512) -> float:
        """The training objective's mean on up to ``max_items`` held-out items."""
        x = self.data.heldout[:max_items]
        gen = torch.Generator(self.device)
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for c, items in chunks(x.shape[0], self.runtime, self.lockstep):
            gen.manual_seed(mix_seed(VALIDATION_SEED, c or 0))
            per_sample, _ = self.objective(self.model, x[items].to(self.device), None, gen)
            total += per_sample.sum() if c is not None else 0.0
        self.model.train()
        return float(self.runtime.sum_(total)) / x.shape[0]

    @torch.no_grad()
    def draw_samples(self, n: int, seed: int = 0, labels=None) -> torch.Tensor:
        """n samples of the EMA model (every process calls this and gets them all); a
        conditional model cycles through the classes unless ``labels`` are given."""
        if labels is None and self.spec.num_classes:
            labels = torch.arange(n, device=self.device) % self.spec.num_classes
        out = torch.zeros((n, *self.spec.shape), device=self.device)
        module = self.sampled_module()
        was_training = module.training
        module.eval()
        for c, items in chunks(n, self.runtime, self.lockstep):
            part = None if labels is None else labels[items]
            x = generate(self.sampler, module, items.stop - items.start,
                         self.spec.shape, self.device, mix_seed(seed, c or 0), part,
                         batch_size=CHUNK).x.float()
            if c is not None:
                out[items] = x
        module.train(was_training)
        out = self.runtime.sum_(out)  # each item is non-zero on one process only
        return out if self.codec is None else decode_fp32(self.codec, out)

    def sampled_module(self):
        """The EMA copy, or the raw weights while the EMA is too young (trainer decides)."""
        return self.model if self.use_raw_weights else self.ema_module

    @torch.no_grad()
    def heldout_bound(self, n: int) -> dict[str, float]:
        """The variational bound of the EMA model on the first ``n`` held-out items (eval/nll.py):
        NLL in bits/dim, its prior and decoder terms, mean MSE and x0 MSE, averaged over the
        items. Chunk c draws its noise from seed mix_seed(BOUND_SEED, c)."""
        from difftk.eval.nll import nll_bits_per_dim

        x = self.data.heldout[:n]
        gen = torch.Generator(self.device)
        keys = ("nll_bpd", "prior_bpd", "decoder_bpd", "mean_mse", "x0_mse")
        module = self.sampled_module()
        was_training = module.training
        module.eval()
        total = torch.zeros(len(keys), dtype=torch.float64, device=self.device)
        for c, items in chunks(x.shape[0], self.runtime, self.lockstep):
            gen.manual_seed(mix_seed(BOUND_SEED, c or 0))
            part = nll_bits_per_dim(module, x[items].to(self.device), batch_size=CHUNK,
                                    generator=gen, pixel_range=getattr(module, "pixel_range", None))
            if c is not None:
                count = items.stop - items.start
                total += torch.tensor([part[k] * count for k in keys], dtype=torch.float64,
                                      device=self.device)
        module.train(was_training)
        total = self.runtime.sum_(total) / x.shape[0]
        return dict(zip(keys, total.tolist(), strict=True))

    def evaluate(self, settings) -> dict[str, float]:
        """The metrics ``settings.eval_metrics`` names (``settings``: the recipe's [log]): sample
        metrics ("fid") on ``eval_samples`` samples, the bound's NLL and mean MSE on
        ``eval_items`` held-out items where the bound applies (said once where it does not)."""
        from difftk.eval.heldout_bound import BOUND_METRICS, bound_keys, bound_problem

        out: dict[str, float] = {}
        if "fid" in settings.eval_metrics:
            out.update(self.sample_metrics(settings.eval_samples))
        wanted = [m for m in settings.eval_metrics if m in BOUND_METRICS]
        in_latents = self.codec is not None and not self.codec.identity
        problem = (bound_problem(self.ema_module.schedule, self.data.kind, in_latents)
                   if wanted else None)
        if problem:
            self._note_once("bound", f"log.eval_metrics: {' and '.join(wanted)} skipped: {problem}")
        elif wanted:
            bound = self.heldout_bound(settings.eval_items)
            out.update({key: bound[key] for key in bound_keys(wanted)})
        return out if self.runtime.is_main else {}

    def gradient_variance(self, recipe, step: int, logger: RunLogger) -> None:
        """Per-sample gradient variance and share of the gradient by logSNR bucket of the
        training network (analysis/training_gradient_variance.py), on rank 0, to TensorBoard
        under grad_variance/ and grad_share/ with its figure; each bucket's range once as text."""
        if self.lockstep:
            self._note_once("grad_fsdp", "log.grad_variance_every skipped: the per-sample "
                            "gradients need the whole network on one process, and FSDP shards it")
            return
        if not self.runtime.is_main:
            return
        from difftk.analysis.gradient_variance import draw_gradient_buckets
        from difftk.analysis.training_gradient_variance import (
            bucket_ranges,
            bucket_scalars,
            live_gradient_buckets,
        )
        from difftk.eval.figures import figure_to_image

        settings = recipe.log
        labels = self.data.heldout_labels if self.spec.num_classes else None
        result = live_gradient_buckets(self.model, recipe, self.data.heldout, labels, step,
                                       targets=list(settings.grad_variance_targets),
                                       buckets=settings.grad_variance_buckets,
                                       samples=settings.grad_variance_samples)
        for tag, value in bucket_scalars(result).items():
            logger.scalar(tag, value, step)
        if "grad_ranges" not in self._told:
            logger.text("grad_variance/buckets", bucket_ranges(result), step)
            self._told.add("grad_ranges")
        logger.image("grad_variance", figure_to_image(draw_gradient_buckets(
            result, f"gradient by noise level, step {step}")), step)

    @torch.no_grad()
    def sample_metrics(self, n: int) -> dict[str, float]:
        """Sample metrics of the EMA model against the held-out split (eval/metrics.py);
        a conditional model draws the held-out labels, so the class mix matches."""
        from difftk.eval.metrics import sample_metrics

        labels = self.pixels.heldout_labels
        if self.spec.num_classes and labels is not None:
            labels = labels.repeat(n // labels.shape[0] + 1)[:n].to(self.device)
        else:
            labels = None
        x = self.draw_samples(n, seed=1, labels=labels)
        if not self.runtime.is_main:
            return {}
        return sample_metrics(x.cpu(), self.pixels.heldout, self.pixels.kind,
                              pixel_range=self.pixel_range)

    def write_samples(self, n: int, path: Path, logger: RunLogger, step: int) -> Path | None:
        """A grid of n samples (over held-out points for 2-D data) to TensorBoard and ``path``
        (drawn by every process, written by rank 0)."""
        x = self.draw_samples(n)
        if not self.runtime.is_main:
            return None
        ref = self.pixels.heldout[:2000] if self.pixels.kind == "vector" else None
        image = sample_figure(x, ref, pixel_range=self.pixel_range)
        logger.image("samples", image, step)
        save_png(image, path)
        return path
