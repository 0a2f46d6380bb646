"""What a run looks at while it trains: validation loss, sample grids, sample metrics.

Samples come from the EMA model through ``eval/generate.py``, as ``difftk sample`` and
``difftk eval`` draw them; the validation loss uses fixed draws, so its curve moves only
with the weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from difftk.data.dataset import DataBundle
from difftk.eval.figures import sample_figure, save_png
from difftk.eval.generate import generate
from difftk.nn.architecture import DataSpec
from difftk.train.run_logger import RunLogger

VALIDATION_SEED = 12345  # the same validation draws at every evaluation
VALIDATION_BATCH = 256


class Monitor:
    def __init__(self, model, ema_module, objective, sampler, data: DataBundle, spec: DataSpec,
                 device: torch.device):
        self.model, self.ema_module, self.objective = model, ema_module, objective
        self.sampler, self.data, self.spec, self.device = sampler, data, spec, device

    @torch.no_grad()
    def validation_loss(self, max_items: int = 512) -> float:
        """The training objective's mean on up to ``max_items`` held-out items."""
        x = self.data.heldout[:max_items].to(self.device)
        gen = torch.Generator(self.device).manual_seed(VALIDATION_SEED)
        self.model.eval()
        total = torch.zeros((), device=self.device)
        for i in range(0, x.shape[0], VALIDATION_BATCH):
            per_sample, _ = self.objective(self.model, x[i:i + VALIDATION_BATCH], None, gen)
            total += per_sample.sum()
        self.model.train()
        return float(total) / x.shape[0]

    @torch.no_grad()
    def draw_samples(self, n: int, seed: int = 0, labels=None) -> torch.Tensor:
        """n samples of the EMA model; a conditional model cycles through the classes
        unless ``labels`` are given."""
        if labels is None and self.spec.num_classes:
            labels = torch.arange(n, device=self.device) % self.spec.num_classes
        return generate(self.sampler, self.ema_module, n, self.spec.shape, self.device, seed,
                        labels).x

    @torch.no_grad()
    def evaluate(self, n: int) -> dict[str, float]:
        """Sample metrics of the EMA model against the held-out split (eval/metrics.py);
        a conditional model draws the held-out labels, so the class mix matches."""
        from difftk.eval.metrics import sample_metrics

        labels = self.data.heldout_labels
        if self.spec.num_classes and labels is not None:
            labels = labels.repeat(n // labels.shape[0] + 1)[:n].to(self.device)
        else:
            labels = None
        x = self.draw_samples(n, seed=1, labels=labels)
        return sample_metrics(x.cpu(), self.data.heldout, self.data.kind)

    def write_samples(self, n: int, path: Path, logger: RunLogger, step: int) -> Path:
        """A grid of n samples (over held-out points for 2-D data) to TensorBoard and ``path``."""
        x = self.draw_samples(n)
        ref = self.data.heldout[:2000] if self.data.kind == "vector" else None
        image = sample_figure(x, ref)
        logger.image("samples", image, step)
        save_png(image, path)
        return path
