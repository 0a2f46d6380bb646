"""A trained run as the `difftk analyze` diagnostics see it: the restored denoiser (through the
same ``restore`` that `difftk sample` uses), its held-out data, the logSNR range its schedule
was trained on, and where its TensorBoard events live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from difftk.data.items import in_memory
from difftk.errors import DifftkError
from difftk.latents.encoded_data import encode_data

# Zero terminal SNR makes EDM's sigma infinite; analyses stop at logSNR = -2 ln 1e4 ~ -18.4.
SIGMA_EDM_CAP = 1e4


@dataclass
class TrainedRun:
    denoiser: torch.nn.Module
    recipe: object
    heldout: torch.Tensor
    heldout_labels: torch.Tensor | None
    step: int
    checkpoint_dir: Path
    device: torch.device

    @property
    def schedule(self):
        return self.denoiser.schedule

    @property
    def run_dir(self) -> Path | None:
        """runs/<name>/ when the checkpoint sits in runs/<name>/checkpoints/<step>/."""
        parent = self.checkpoint_dir.parent
        return parent.parent if parent.name == "checkpoints" else None

    def log_snr_range(self) -> tuple[float, float]:
        """The logSNR range the schedule reaches (what the network was trained on)."""
        lo, hi = self.schedule.sigma_edm_range()
        return -2 * float(np.log(min(hi, SIGMA_EDM_CAP))), -2 * float(np.log(lo))

    def levels_at_log_snr(self, log_snr: float, n: int):
        """n copies of the schedule's level at ``log_snr`` (on the run's device)."""
        sigma_edm = torch.full((n,), float(np.exp(-0.5 * log_snr)), dtype=torch.float64)
        return self.schedule.levels_from_sigma_edm(sigma_edm).to(self.device)

    def times(self, log_snr: np.ndarray) -> np.ndarray:
        """The schedule's time of each logSNR (for the t axis of every figure)."""
        t = self.schedule.time_from_log_snr(torch.as_tensor(log_snr, dtype=torch.float64))
        return t.numpy()

    def time_label(self) -> str:
        lo, hi = self.schedule.time_range()
        return f"t ({self.schedule.name} schedule, {lo:g}..{hi:g})"

    def labels_for(self, index: torch.Tensor) -> torch.Tensor | None:
        if self.heldout_labels is None:
            return None
        return self.heldout_labels[index].to(self.device)


def load_trained_run(path, device: str = "auto", use_ema: bool = True,
                     max_samples: int | None = None) -> TrainedRun:
    """Restore a checkpoint (run directory, checkpoints/latest or a step directory)."""
    from difftk.run.assemble import restore
    from difftk.run.checkpoint import resolve_checkpoint_dir
    from difftk.run.runtime import make_runtime

    dev = make_runtime(device).device
    restored = restore(path, dev, use_ema=use_ema)
    pixels = restored.recipe.parts["data"].load()
    if pixels.heldout is None or len(pixels.heldout) == 0:
        raise DifftkError(f"{path}: the run's data set has no held-out split to analyse")
    # the held-out items in the space the network denoises: a latent run's latents
    data = encode_data(restored.codec, pixels, dev)
    heldout = data.heldout
    labels = data.heldout_labels if restored.spec.num_classes else None
    if max_samples is not None:
        heldout = heldout[:max_samples]
        labels = None if labels is None else labels[:max_samples]
    for p in restored.denoiser.parameters():
        p.requires_grad_(False)
    return TrainedRun(restored.denoiser, restored.recipe, in_memory(heldout).float(), labels, restored.step,
                      resolve_checkpoint_dir(path), dev)


def log_analysis_figure(run: TrainedRun, name: str, image: np.ndarray) -> Path | None:
    """Write a figure to the run's TensorBoard events under analysis/<name> at the checkpoint's
    step; returns the event directory, or None when the checkpoint is outside a run."""
    if run.run_dir is None:
        return None
    from difftk.run.run_logger import RunLogger

    logger = RunLogger.for_recipe(run.recipe, run.run_dir, enabled=True)
    logger.image(f"analysis/{name}", image, run.step)
    logger.close()
    return run.run_dir / "tb"
