"""difftk eval: sample metrics of a trained model, sampler speed, and the NLL bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption, app


@app.command("eval", rich_help_panel="Generation")
def eval_command(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint directory, its run directory, checkpoints/latest, or a "
             ".safetensors file written by difftk ema.")],
    sampler: Annotated[str | None, typer.Option(help="Sampler (default: the recipe's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Number of sampler steps.")] = None,
    guidance: Annotated[float | None, typer.Option(
        help="Classifier-free guidance scale (conditional models; 1 = none).")] = None,
    n: Annotated[int, typer.Option("-n", "--num", min=1, help="Samples to generate.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the initial noise.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per sampler call.")] = 500,
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
    nll_samples: Annotated[int, typer.Option(min=1, help="Held-out images scored by --nll.")
                           ] = 256,
    features: Annotated[str | None, typer.Option(
        help='FID and KID also on learned features: "inception" (needs --weights).')] = None,
    weights: Annotated[Path | None, typer.Option(
        help="The feature network's weights, e.g. pt_inception-2015-12-05-6726825d.pth "
             "(see docs/interop.md).")] = None,
    ema: Annotated[bool, typer.Option(help="Use the EMA weights (--no-ema: raw weights).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')] = "auto",
):
    """Evaluate a trained model: sample metrics vs held-out data, --speed, --nll."""
    from difftk.eval.checkpoint_report import checkpoint_report, speed_samplers
    from difftk.eval.features import learned_features
    from difftk.eval.trained_model import load_trained_model
    from difftk.recipe import sampler_with_overrides
    from difftk.train.runtime import make_runtime

    dev = make_runtime(device).device
    learned = learned_features(features, weights, dev) if metrics else None
    model = load_trained_model(checkpoint, dev, use_ema=ema)
    chosen = sampler_with_overrides(model.recipe, sampler, steps, guidance, set_)
    names = [s.strip() for s in samplers.split(",")] if samplers else None
    timed = speed_samplers(model.recipe, names, steps, guidance) if speed else None
    report = {"checkpoint": str(checkpoint), **checkpoint_report(
        model, chosen, n=n, seed=seed, batch_size=batch_size, metrics=metrics, speed=timed,
        nll_samples=nll_samples if nll else 0, features=learned)}
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=str))
        return
    typer.echo(f"{checkpoint} (step {model.step}), {chosen.name} sampler, {n} samples")
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
