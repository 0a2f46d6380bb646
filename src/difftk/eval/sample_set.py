"""A large set of samples (50,000 for FID) drawn in batches over any number of processes.

Sample i is drawn from its own seeded noise stream (diffusion/noise_source.py: its initial
noise and every draw of a stochastic sampler) and, for a class-conditional model, with
label ``labels[i % len(labels)]`` (every class in turn: a class-balanced set), so the set
of images depends only on (checkpoint, sampler, seed, n): not on the batch size nor on the
number of processes. Batch j (samples j*B .. (j+1)*B - 1) belongs to process j mod W, as in
DiT's sample_ddp.py; a batch whose files all exist is skipped, so a killed job continues
where it stopped (EDM's generate.py resumes the same way, by file).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from difftk.diffusion.noise_source import PerSampleNoise


@dataclass(frozen=True)
class SampleBatches:
    n: int
    batch_size: int
    rank: int = 0
    world_size: int = 1

    def mine(self) -> list[range]:
        """The index ranges of this process's batches."""
        starts = range(0, self.n, self.batch_size)
        return [range(s, min(s + self.batch_size, self.n))
                for j, s in enumerate(starts) if j % self.world_size == self.rank]


def labels_for(indices: range, classes: list[int] | None, device) -> torch.Tensor | None:
    if not classes:
        return None
    return torch.tensor([classes[i % len(classes)] for i in indices], dtype=torch.long,
                        device=device)


@torch.no_grad()
def draw(sampler, model, indices: range, seed: int, classes: list[int] | None, device):
    """(pixels, labels, nfe) of samples ``indices``: each from its own stream."""
    noise = PerSampleNoise(seed, indices, device)
    x_T = noise.randn(model.spec.shape)
    labels = labels_for(indices, classes, device)
    result = sampler.sample(model.denoiser, x_T, noise, labels, guide=model.guide)
    return model.to_pixels(result.x), labels, result.nfe


def png_name(i: int, label: int | None) -> str:
    return f"{i:06d}.png" if label is None else f"{i:06d}_label{label}.png"


def sample_png_dir(sampler, model, out: Path, plan: SampleBatches, seed: int,
                   classes: list[int] | None, device, data_part,
                   progress: Callable[[int], None] | None = None) -> tuple[int, int, int]:
    """Write this process's samples as PNGs; (written, already there, nfe per sample)."""
    from difftk.eval.sample_files import write_png_files

    written = skipped = nfe = 0
    out.mkdir(parents=True, exist_ok=True)
    for indices in plan.mine():
        names = [png_name(i, None if not classes else classes[i % len(classes)])
                 for i in indices]
        if all((out / name).is_file() for name in names):
            skipped += len(indices)
        else:
            pixels, _, nfe = draw(sampler, model, indices, seed, classes, device)
            write_png_files(out, pixels, names, data_part)
            written += len(indices)
        if progress is not None:
            progress(len(indices))
    return written, skipped, nfe
