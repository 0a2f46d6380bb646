"""What ``difftk eval`` measures of a trained model: sample metrics against the held-out
split, the speed of each sampler, and the likelihood in bits/dim (the bound, eval/nll.py, or
the ODE's, eval/ode_likelihood.py)."""

from __future__ import annotations

import torch

from difftk.errors import DifftkError, RecipeError
from difftk.recipe import Recipe, sampler_with_overrides


def speed_samplers(recipe: Recipe, names: list[str] | None = None, steps: int | None = None,
                   guidance: float | None = None) -> list:
    """The named samplers, or every installed one that can run on the recipe's schedule.

    A sampler whose default grid is a table spacing runs on the Karras grid where the
    schedule has no table; one that needs a table (ddpm) is then left out unless named.
    """
    from difftk.registry import default_registry

    chosen = names or default_registry().names("samplers")
    out = []
    for name in chosen:
        for sets in ([], ['sampler.grid="karras"']):
            try:
                out.append(sampler_with_overrides(recipe, name, steps, guidance, sets))
                break
            except RecipeError:
                if sets and names:  # a sampler asked for by name must run
                    raise
    return out


NLL_METHODS = ("auto", "bound", "ode", "importance")


def nll_report(denoiser, heldout: torch.Tensor, *, seed: int, batch_size: int,
               method: str = "auto", data_part=None, kind: str = "image",
               pixel_range=None, importance_samples: int = 16) -> dict[str, float]:
    """The likelihood of ``heldout``: the variational bound summed over a t-space schedule's
    table (eval/nll.py), the probability-flow ODE's exact likelihood on any schedule
    (eval/ode_likelihood.py), or the K-sample importance-sampled bound over whole forward
    trajectories (eval/importance_likelihood.py, K = ``importance_samples``; ``nll_bpd`` is
    then L_K). ``auto`` takes the bound where the schedule has a table."""
    schedule = denoiser.schedule
    if method not in NLL_METHODS:
        raise DifftkError(f"--nll-method must be one of {', '.join(NLL_METHODS)}")
    if method == "auto":
        method = "bound" if getattr(schedule, "has_table", False) else "ode"
    device = next(denoiser.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    if method in ("bound", "importance") and not getattr(schedule, "has_table", False):
        raise DifftkError(f"--nll-method {method} sums over the steps of a t-space "
                          f'schedule\'s table, and the schedule "{schedule.name}" has none; '
                          "use --nll-method ode")
    if method == "importance":
        from difftk.eval.importance_likelihood import importance_nll_bits_per_dim

        report = importance_nll_bits_per_dim(denoiser, heldout.to(device),
                                             samples=importance_samples, batch_size=batch_size,
                                             generator=gen, pixel_range=pixel_range)
        return {"nll_method": "importance", "nll_bpd": report["iwae_bpd"], **report}
    if method == "bound":
        from difftk.eval.nll import nll_bits_per_dim

        return {"nll_method": "bound", **nll_bits_per_dim(
            denoiser, heldout.to(device), batch_size=batch_size, generator=gen,
            pixel_range=pixel_range)}
    from difftk.eval.ode_likelihood import ode_nll_bits_per_dim

    width = None
    if kind == "image" and data_part is not None and getattr(data_part, "std", None):
        width = [1.0 / (255.0 * float(s)) for s in data_part.std]  # one 8-bit bin per channel
    return {"nll_method": "ode", **ode_nll_bits_per_dim(
        denoiser, heldout.to(device), bin_width=width if width is None or len(width) > 1
        else width[0], batch_size=batch_size, generator=gen)}


def checkpoint_report(model, sampler, *, n: int, seed: int = 0, batch_size: int = 500,
                      metrics: bool = True, speed: list | None = None,
                      nll_samples: int = 0, features: dict | None = None,
                      nll_method: str = "auto", importance_samples: int = 16) -> dict:
    """Evaluate ``model`` (a restored checkpoint or weights file: recipe, denoiser, spec,
    step) with ``sampler``; ``speed``: samplers to time; ``nll_samples``: held-out images
    the NLL bound scores (0: none); ``features``: learned feature extractors for FID/KID
    (eval/features.py). A class-conditional model draws the held-out labels."""
    from difftk.eval.generate import cycle_labels, generate, sampler_speed
    from difftk.eval.metrics import sample_metrics

    device = next(model.denoiser.parameters()).device
    data = model.recipe.parts["data"].load()
    if features and data.kind != "image":
        raise DifftkError(f"FID on learned features needs image data, and this run's data "
                          f"are {data.kind}s")
    labels = None
    if model.spec.num_classes and data.heldout_labels is not None:
        labels = cycle_labels(data.heldout_labels, n, device)  # the held-out class mix
    report: dict = {"step": model.step, "sampler": sampler.params() | {"name": sampler.name},
                    "samples": n}
    if metrics:
        result = generate(sampler, model.denoiser, n, model.spec.shape, device, seed, labels,
                          batch_size, model.to_pixels, guide=model.guide)
        report["nfe_per_image"] = result.nfe
        report["metrics"] = sample_metrics(result.x, data.heldout, data.kind, features,
                                           pixel_range=model.pixel_range)
    if speed:
        report["speed"] = sampler_speed(speed, model.denoiser, n, model.spec.shape, device,
                                        seed, labels, batch_size, model.to_pixels)
    if nll_samples:
        if model.codec is not None and not model.codec.identity:
            raise DifftkError(f'--nll bounds the likelihood of pixels, and this model draws '
                              f'[latents] "{model.recipe.parts["latents"].name}"; leave out --nll')
        report["nll"] = nll_report(model.denoiser, data.heldout[:nll_samples], seed=seed,
                                   batch_size=batch_size, method=nll_method,
                                   data_part=model.recipe.parts["data"], kind=data.kind,
                                   pixel_range=model.pixel_range,
                                   importance_samples=importance_samples)
    return report
