"""Draw many samples in batches, and time samplers (images per second, NFE per image)."""

from __future__ import annotations

import time

import torch

from difftk.diffusion.noise_source import PerSampleNoise
from difftk.diffusion.sampler import SampleResult


def cycle_labels(labels, n: int, device) -> torch.Tensor | None:
    """None, or n class indices from one class, a list or a tensor, cycled over the batch
    (training grids cycle through the classes, evaluation through the held-out labels)."""
    if labels is None:
        return None
    if isinstance(labels, int):
        return torch.full((n,), labels, dtype=torch.long, device=device)
    values = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if values.numel() == 0:
        raise ValueError("an empty list of labels")
    return values.repeat((n + values.numel() - 1) // values.numel())[:n].to(device)


def generate(sampler, denoiser, n: int, shape: tuple[int, ...], device, seed: int = 0,
             labels: torch.Tensor | None = None, batch_size: int = 500,
             decode=None, guide=None) -> SampleResult:
    """n samples drawn ``batch_size`` at a time (labels [n] or None), sample i from its own
    seeded stream as ``difftk sample`` draws it (diffusion/noise_source.py), so the set does
    not depend on the batch size; ``decode`` maps each batch from the [latents] space to
    pixels (Restored.to_pixels); ``guide`` is autoguidance's weaker denoiser."""
    parts, nfe = [], 0
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        noise = PerSampleNoise(seed, range(i, i + b), device)
        result = sampler.sample(denoiser, noise.randn(shape), noise,
                                None if labels is None else labels[i:i + b], guide=guide)
        parts.append(result.x if decode is None else decode(result.x))
        nfe = result.nfe
    return SampleResult(torch.cat(parts), nfe)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def sampler_speed(samplers, denoiser, n: int, shape: tuple[int, ...], device, seed: int = 0,
                  labels: torch.Tensor | None = None, batch_size: int = 500,
                  decode=None) -> list[dict]:
    """For each sampler: steps, grid, NFE per image and images per second on n samples
    (decoding to pixels included, for a model trained on [latents]).

    A two-sample run first takes one-off costs (allocations, kernel selection) out of the
    timing.
    """
    rows = []
    for sampler in samplers:
        generate(sampler, denoiser, 2, shape, device, seed,
                 None if labels is None else labels[:2], batch_size, decode)
        _sync(device)
        start = time.perf_counter()
        result = generate(sampler, denoiser, n, shape, device, seed, labels, batch_size, decode)
        _sync(device)
        seconds = time.perf_counter() - start
        rows.append({"sampler": sampler.name, "grid": sampler.grid,
                     "steps": sampler.noise_levels(denoiser.schedule).steps,
                     "nfe_per_image": result.nfe, "images_per_second": n / seconds,
                     "seconds": seconds})
    return rows
