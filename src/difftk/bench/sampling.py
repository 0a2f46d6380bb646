"""What a sampler costs beyond its network evaluations.

A sampler's time per network evaluation (one call of ``sample`` divided by its NFE) is set
against a bare forward pass of the same network at the same batch (``net(x, t, labels)``
without gradients), both as ``difftk sample`` runs them (no autocast), measured
interleaved: one sampling call, then NFE bare forwards. The overhead is what the solver,
the target's conversions and the guidance bookkeeping add.
"""

from __future__ import annotations

import torch

from difftk.bench.clock import median, timed


def sampling_overhead(loop, batch: int, repeats: int, warmup: int = 1) -> dict:
    """Median seconds per network evaluation of the recipe's sampler and of a bare forward."""
    sampler, dev, spec = loop.recipe.parts["sampler"], loop.device, loop.spec
    denoiser = loop.ema.module
    net = denoiser.net
    gen = torch.Generator(dev).manual_seed(0)
    noise = torch.randn((batch, *spec.shape), device=dev, generator=gen)
    labels = torch.zeros(batch, dtype=torch.long, device=dev) if spec.num_classes else None
    time_in = torch.ones(batch, device=dev)
    nfe = sampler.sample(denoiser, noise, gen, labels).nfe

    def bare():
        with torch.no_grad():
            for _ in range(nfe):
                net(noise, time_in, labels)

    def sample():
        sampler.sample(denoiser, noise, gen, labels)

    per_eval, forward = [], []
    for i in range(warmup + repeats):
        s, f = timed(dev, sample) / nfe, timed(dev, bare) / nfe
        if i >= warmup:
            per_eval.append(s)
            forward.append(f)
    s, f = median(per_eval), median(forward)
    return {"sampler": sampler.name, "steps": sampler.steps, "nfe": nfe, "batch": batch,
            "seconds_per_evaluation": s, "bare_forward_seconds": f, "overhead": s / f - 1}
