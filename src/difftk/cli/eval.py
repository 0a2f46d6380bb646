"""difftk eval: sample metrics of a checkpoint, sampler speed, and the NLL bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption, app, fail
from difftk.errors import DifftkError, RecipeError


def _sampler(recipe, name: str | None, steps: int | None, guidance: float | None,
             sets: list[str]):
    from difftk.recipe import sampler_with_overrides

    return sampler_with_overrides(recipe, name, steps, guidance, sets)


def _speed_samplers(recipe, names: str | None, steps: int | None, guidance: float | None):
    """Every installed sampler that can run on the recipe's schedule (or the named ones).

    A sampler whose default grid is a table spacing runs on the Karras grid where the
    schedule has no table; one that needs a table (ddpm) is then left out unless named.
    """
    from difftk.registry import default_registry

    registry = default_registry()
    chosen = names.split(",") if names else registry.names("samplers")
    out = []
    for name in chosen:
        try:
            out.append(_sampler(recipe, name.strip(), steps, guidance, []))
            continue
        except RecipeError:
            pass
        try:
            out.append(_sampler(recipe, name.strip(), steps, guidance, ['sampler.grid="karras"']))
        except RecipeError:
            if names:  # a sampler asked for by name must run; the rest are skipped quietly
                raise
    return out


@app.command("eval", rich_help_panel="Generation")
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint directory, its run directory, or checkpoints/latest.")],
    sampler: Annotated[str | None, typer.Option(help="Sampler (default: the recipe's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Number of sampler steps.")] = None,
    guidance: Annotated[float | None, typer.Option(
        help="Classifier-free guidance scale (conditional models; 1 = none).")] = None,
    n: Annotated[int, typer.Option("-n", "--num", help="Samples to generate.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the initial noise.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Samples per sampler call.")] = 500,
    metrics: Annotated[bool, typer.Option(
        help="Pixel FID and KID (images) or Frechet, KID, energy and sliced Wasserstein "
             "distances (vectors) against the held-out split.")] = True,
    speed: Annotated[bool, typer.Option(
        "--speed", help="Images per second and network evaluations per image for each "
                        "sampler.")] = False,
    samplers: Annotated[str | None, typer.Option(
        help="Comma list of samplers for --speed (default: all that fit the schedule).")] = None,
    nll: Annotated[bool, typer.Option(
        "--nll", help="Negative log-likelihood bound in bits/dim on held-out images.")] = False,
    nll_samples: Annotated[int, typer.Option(help="Held-out images scored by --nll.")] = 256,
    ema: Annotated[bool, typer.Option(help="Use the EMA weights (--no-ema: raw weights).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')] = "auto",
):
    """Evaluate a checkpoint: sample metrics vs held-out data, --speed, --nll."""
    try:
        import torch

        from difftk.eval.generate import cycle_labels
        from difftk.train.restore import restore
        from difftk.train.runtime import make_runtime

        dev = make_runtime(device).device
        restored = restore(checkpoint, dev, use_ema=ema)
        chosen = _sampler(restored.recipe, sampler, steps, guidance, list(set_ or []))
        data = restored.recipe.parts["data"].load()
        labels = None
        if restored.spec.num_classes and data.heldout_labels is not None:
            labels = cycle_labels(data.heldout_labels, n, dev)
        report: dict = {"checkpoint": str(checkpoint), "step": restored.step,
                        "sampler": chosen.params() | {"name": chosen.name}, "samples": n}
        if metrics:
            from difftk.eval.generate import generate
            from difftk.eval.metrics import sample_metrics

            result = generate(chosen, restored.denoiser, n, restored.spec.shape, dev, seed,
                              labels, batch_size)
            report["nfe_per_image"] = result.nfe
            report["metrics"] = sample_metrics(result.x, data.heldout, data.kind)
        if speed:
            from difftk.eval.generate import sampler_speed

            report["speed"] = sampler_speed(
                _speed_samplers(restored.recipe, samplers, steps, guidance),
                restored.denoiser, n, restored.spec.shape, dev, seed, labels, batch_size)
        if nll:
            from difftk.eval.nll import nll_bits_per_dim

            if not restored.denoiser.schedule.has_table:
                raise DifftkError("--nll sums the bound over the steps of a t-space schedule's "
                                  f'table, and the schedule "{restored.denoiser.schedule.name}" '
                                  "has none")
            x0 = data.heldout[:nll_samples].to(dev)
            gen = torch.Generator(dev).manual_seed(seed)
            report["nll"] = nll_bits_per_dim(restored.denoiser, x0, batch_size=batch_size,
                                             generator=gen)
    except DifftkError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=str))
        return
    typer.echo(f"{checkpoint} (step {restored.step}), {chosen.name} sampler, {n} samples")
    for key, value in report.get("metrics", {}).items():
        typer.echo(f"  {key:<20} {value:.6g}")
    if "nfe_per_image" in report:
        typer.echo(f"  {'nfe_per_image':<20} {report['nfe_per_image']}")
    for key, value in report.get("nll", {}).items():
        typer.echo(f"  {key:<20} {value:.6g}")
    if "speed" in report:
        typer.echo(f"  {'sampler':<16} {'grid':<10} {'steps':>5} {'NFE/image':>9} {'images/s':>10}")
        for row in report["speed"]:
            typer.echo(f"  {row['sampler']:<16} {row['grid']:<10} {row['steps']:>5} "
                       f"{row['nfe_per_image']:>9} {row['images_per_second']:>10.1f}")
