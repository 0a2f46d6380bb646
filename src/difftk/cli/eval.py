"""difftk eval: sample metrics of a trained model, sampler speed, and the NLL bound."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import GuideOption, SetOption, fail
from difftk.cli.eval_stats import CACHE_HELP, CONVENTION_HELP, DINOV2_HELP, WEIGHTS_HELP
from difftk.errors import DifftkError


def eval_command(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint directory, its run directory, checkpoints/latest, or a "
             ".safetensors file written by difftk ema; or, with --ref, a set of samples: a "
             "PNG folder, a zip or an .npz (arr_0 or difftk's samples).")],
    sampler: Annotated[str | None, typer.Option(help="Sampler (default: the recipe's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Number of sampler steps.")] = None,
    guidance: Annotated[float | None, typer.Option(
        help="Guidance scale: 1 unguided, >1 classifier-free (conditional models) or "
             "autoguidance (--guide).")] = None,
    guide: GuideOption = None,
    n: Annotated[int, typer.Option("-n", "--num", min=1, help="Samples to generate.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the initial noise.")] = 0,
    batch_size: Annotated[int, typer.Option(min=1, help="Samples per sampler call.")] = 500,
    no_metrics: Annotated[bool, typer.Option(
        "--no-metrics", help="Draw no samples for metrics (with --speed or --nll).")] = False,
    metrics: Annotated[str | None, typer.Option(
        help="With --ref: a comma list of fid, sfid, is, prdc, fd_dinov2 (default fid). "
             "Without: pixel FID and KID (images) or Frechet, KID, energy and sliced "
             "Wasserstein distances (vectors) against the held-out split.")] = None,
    ref: Annotated[Path | None, typer.Option(
        help="Reference statistics (difftk eval-stats, pytorch-fid or EDM .npz, an ADM "
             "reference batch, EDM2 .pkl): score the paper metrics against them.")] = None,
    dinov2: Annotated[Path | None, typer.Option(help=DINOV2_HELP)] = None,
    inception_input: Annotated[str, typer.Option(help=CONVENTION_HELP)] = "tf",
    cache: Annotated[Path | None, typer.Option(help=CACHE_HELP)] = None,
    speed: Annotated[bool, typer.Option(
        "--speed", help="Images per second and network evaluations per image for each "
                        "sampler.")] = False,
    samplers: Annotated[str | None, typer.Option(
        help="Comma list of samplers for --speed (default: all that fit the schedule).")] = None,
    nll: Annotated[bool, typer.Option(
        "--nll", help="Negative log-likelihood in bits/dim on held-out images.")] = False,
    nll_method: Annotated[str, typer.Option(
        help="bound: the variational bound over a table's steps; ode: the probability-flow "
             "ODE's exact likelihood (any schedule); importance: the K-sample importance-"
             "sampled bound over whole forward trajectories, with the weights' spread (seed "
             "003 eq. 1.30; Burda et al. 2016); auto: bound where there is a table.")
    ] = "auto",
    trajectories: Annotated[int, typer.Option(
        min=1, help="With --nll-method importance: forward trajectories K per held-out "
                    "image.")] = 16,
    nll_samples: Annotated[int, typer.Option(min=1, help="Held-out images scored by --nll.")
                           ] = 256,
    features: Annotated[str | None, typer.Option(
        help='FID and KID also on learned features: "inception" (needs --weights).')] = None,
    weights: Annotated[Path | None, typer.Option(help=WEIGHTS_HELP)] = None,
    ema: Annotated[bool, typer.Option(help="Use the EMA weights (--no-ema: raw weights).")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')] = "auto",
):
    """Evaluate a trained model: sample metrics vs held-out data, --speed, --nll; with --ref,
    the paper metrics (FID, sFID, IS, precision/recall, FD-DINOv2) of its samples or of a
    folder of samples, over torchrun processes."""
    if ref is not None:
        if speed or nll or no_metrics:
            raise DifftkError("--ref scores samples; run --speed and --nll without it")
        _paper(checkpoint, ref, metrics or "fid", weights, dinov2, inception_input, cache,
               sampler, steps, guidance, n, seed, batch_size, ema, set_, device, as_json, guide)
        return
    if metrics is not None and metrics != "pixel":
        raise DifftkError(f"--metrics {metrics} scores against reference statistics: give "
                          "--ref FILE (difftk eval-stats makes one)")
    metrics = not no_metrics
    from difftk.eval.checkpoint_report import checkpoint_report, speed_samplers
    from difftk.eval.features import learned_features
    from difftk.eval.trained_model import load_trained_model, with_guide
    from difftk.recipe import sampler_with_overrides
    from difftk.run.runtime import make_runtime

    dev = make_runtime(device).device
    learned = learned_features(features, weights, dev) if metrics else None
    model = load_trained_model(checkpoint, dev, use_ema=ema)
    if guide is not None:
        model = with_guide(model, guide, dev, use_ema=ema)
    chosen = sampler_with_overrides(model.recipe, sampler, steps, guidance, set_)
    names = [s.strip() for s in samplers.split(",")] if samplers else None
    timed = speed_samplers(model.recipe, names, steps, guidance) if speed else None
    report = {"checkpoint": str(checkpoint), **({"guide": str(guide)} if guide else {}),
              **checkpoint_report(
        model, chosen, n=n, seed=seed, batch_size=batch_size, metrics=metrics, speed=timed,
        nll_samples=nll_samples if nll else 0, features=learned, nll_method=nll_method,
        importance_samples=trajectories)}
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=str))
        return
    typer.echo(f"{checkpoint} (step {model.step}), {chosen.name} sampler, {n} samples")
    for key, value in report.get("metrics", {}).items():
        typer.echo(f"  {key:<20} {value:.6g}")
    if "nfe_per_image" in report:
        typer.echo(f"  {'nfe_per_image':<20} {report['nfe_per_image']}")
    for key, value in report.get("nll", {}).items():
        typer.echo(f"  {key:<20} {value:.6g}" if not isinstance(value, str) else
                   f"  {key:<20} {value}")
    if "speed" in report:
        typer.echo(f"  {'sampler':<16} {'grid':<10} {'steps':>5} {'NFE/image':>9} {'images/s':>10}")
        for row in report["speed"]:
            typer.echo(f"  {row['sampler']:<16} {row['grid']:<10} {row['steps']:>5} "
                       f"{row['nfe_per_image']:>9} {row['images_per_second']:>10.1f}")


def _paper(path, ref, metrics, weights, dinov2, inception_input, cache, sampler, steps,
           guidance, n, seed, batch_size, ema, set_, device, as_json, guide=None):
    from difftk.run.runtime import announce_failure, make_runtime

    runtime = None
    try:
        runtime = make_runtime(device, distributed=True)
        report = _paper_report(path, ref, metrics, weights, dinov2, inception_input, cache,
                               sampler, steps, guidance, n, seed, batch_size, ema, set_,
                               runtime, guide)
        if runtime.is_main:
            _print_paper(report, as_json)
    except DifftkError as exc:
        error = announce_failure(exc, runtime)
        if runtime is None or not runtime.distributed:
            raise error from None
        runtime.exit_process(fail(error).exit_code)
    runtime.close()
    runtime.exit_process(0)


def is_sample_set(path: Path) -> bool:
    """A folder, zip or .npz of samples rather than a run, a checkpoint or a weights file."""
    if path.suffix in (".npz", ".zip"):
        return True
    markers = ("checkpoints", "state.json", "recipe.toml", "model.safetensors")
    return path.is_dir() and not any((path / m).exists() for m in markers)


def _paper_report(path, ref, metrics, weights, dinov2, inception_input, cache, sampler, steps,
                  guidance, n, seed, batch_size, ema, set_, runtime, guide=None) -> dict:
    from difftk.cli.work_progress import counted_progress
    from difftk.eval.feature_extraction import load_networks, my_share, parse_metrics
    from difftk.eval.paper_eval import drawn_features, files_features, score
    from difftk.eval.reference_stats import read_reference

    names = parse_metrics(metrics)
    read_reference(ref)  # a missing or damaged file is found before any network loads
    networks = load_networks(names, runtime.device, weights, dinov2, inception_input)
    report: dict = {"samples_from": str(path), "reference": str(ref),
                    "inception_input": inception_input}
    if is_sample_set(path):
        from difftk.eval.image_sets import open_image_set

        total = len(open_image_set(path))
        share = len(my_share(total, runtime.rank, runtime.world_size))
        with counted_progress(share, "features", "images") as advance:
            features = files_features(path, networks, names, runtime, cache=cache,
                                      progress=advance if runtime.is_main else None)
    else:
        from difftk.eval.sample_set import SampleBatches
        from difftk.eval.trained_model import load_trained_model, with_guide
        from difftk.recipe import sampler_with_overrides

        model = load_trained_model(path, runtime.device, use_ema=ema)
        if guide is not None:
            model = with_guide(model, guide, runtime.device, use_ema=ema)
        if model.kind != "image":
            raise DifftkError(f"{path}: paper metrics score images, and this model draws "
                              f"{model.kind} samples")
        chosen = sampler_with_overrides(model.recipe, sampler, steps, guidance, set_)
        classes = list(range(model.spec.num_classes)) \
            if model.spec.num_classes and chosen.guidance != 0 else None
        plan = SampleBatches(n, batch_size, runtime.rank, runtime.world_size)
        with counted_progress(sum(len(r) for r in plan.mine()), "sampling", "samples") as adv:
            features, nfe = drawn_features(model, chosen, plan, seed, classes, networks, names,
                                           runtime, adv if runtime.is_main else None)
        report |= {"step": model.step, "sampler": chosen.params() | {"name": chosen.name},
                   "nfe_per_image": nfe, **({"guide": str(guide)} if guide else {})}
    report["count"] = features.count
    report["metrics"] = score(features, ref, networks, names, runtime)
    return report


def _print_paper(report: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report, indent=1, default=str))
        return
    typer.echo(f"{report['samples_from']}: {report['count']} samples against {report['reference']}"
               f" (Inception input {report['inception_input']})")
    for key, value in report["metrics"].items():
        typer.echo(f"  {key:<20} {value:.6g}")
