"""What a run looks at while it trains: validation loss, sample grids, sample metrics.

Samples come from the EMA model through ``eval/generate.py``, as ``difftk sample`` and
``difftk eval`` draw them; the validation loss uses fixed draws, so its curve moves only
with the weights.

Both are cut into fixed chunks, each with its own seed, shared out over the processes
(chunk c on rank c mod world size) and summed or gathered: every process works, and the
numbers and images do not depend on how many processes drew them. Only rank 0 writes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from difftk.data.batches import mix_seed
from difftk.data.dataset import DataBundle
from difftk.eval.figures import sample_figure, save_png
from difftk.eval.generate import generate
from difftk.latents.latents import decode_fp32
from difftk.nn.architecture import DataSpec
from difftk.train.run_logger import RunLogger
from difftk.train.runtime import Runtime

VALIDATION_SEED = 12345  # the same validation draws at every evaluation
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
                 pixels: DataBundle | None = None):
        self.model, self.ema_module, self.objective = model, ema_module, objective
        # Samples are drawn in the [latents] space of ``data`` and decoded (fp32) to be
        # compared with, and drawn as, ``pixels`` (the same bundle in pixel space).
        self.codec, self.pixels = codec, pixels if pixels is not None else data
        self.lockstep = lockstep
        self.sampler, self.data, self.spec = sampler, data, spec
        self.runtime, self.device = runtime, runtime.device

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
        for c, items in chunks(n, self.runtime, self.lockstep):
            part = None if labels is None else labels[items]
            x = generate(self.sampler, self.ema_module, items.stop - items.start,
                         self.spec.shape, self.device, mix_seed(seed, c or 0), part,
                         batch_size=CHUNK).x.float()
            if c is not None:
                out[items] = x
        out = self.runtime.sum_(out)  # each item is non-zero on one process only
        return out if self.codec is None else decode_fp32(self.codec, out)

    @torch.no_grad()
    def evaluate(self, n: int) -> dict[str, float]:
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
        return sample_metrics(x.cpu(), self.pixels.heldout, self.pixels.kind)

    def write_samples(self, n: int, path: Path, logger: RunLogger, step: int) -> Path | None:
        """A grid of n samples (over held-out points for 2-D data) to TensorBoard and ``path``
        (drawn by every process, written by rank 0)."""
        x = self.draw_samples(n)
        if not self.runtime.is_main:
            return None
        ref = self.pixels.heldout[:2000] if self.pixels.kind == "vector" else None
        image = sample_figure(x, ref)
        logger.image("samples", image, step)
        save_png(image, path)
        return path
