"""The difftk command line: parse, load the recipe, call the library. No math here.

Heavy imports (torch, tensorboard) happen inside the commands that need them, so
``difftk --help`` answers at once.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from difftk.errors import DifftkError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Train diffusion models from recipes of named, pluggable parts, and "
                       "study why their training is stable or not.")

SetOption = Annotated[list[str] | None, typer.Option(
    "--set", "-s", metavar="SECTION.FIELD=VALUE",
    help="Override a recipe field, e.g. --set weight.name=min_snr --set weight.gamma=5. "
         "Values are read as TOML (numbers, true/false, [lists], \"strings\"). Repeatable.")]


def _fail(exc: Exception) -> typer.Exit:
    if os.environ.get("DIFFTK_DEBUG"):
        raise exc
    code = exc.exit_code if isinstance(exc, DifftkError) else 1
    typer.echo(f"error: {exc}" if "\n" not in str(exc) else f"error:\n{exc}", err=True)
    return typer.Exit(code)


@app.command(rich_help_panel="Training")
def train(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe, e.g. recipes/edm.toml")],
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in runs/<run.name> from its latest checkpoint.")] = False,
    progress: Annotated[bool, typer.Option(
        help="Show a progress bar on stderr.")] = True,
):
    """Train a model from a recipe; writes runs/<name>/ (recipe, checkpoints, tb, samples)."""
    try:
        from difftk.recipe import load_recipe
        from difftk.train.runtime import make_runtime
        from difftk.train.trainer import Trainer

        r = load_recipe(recipe, set_)
        trainer = Trainer(r, make_runtime(r.run.device), resume=resume, progress=progress)
        t0 = __import__("time").perf_counter()
        grid = trainer.fit()
        elapsed = __import__("time").perf_counter() - t0
    except DifftkError as exc:
        raise _fail(exc) from None
    typer.echo(f"trained {trainer.step} steps in {elapsed:.0f}s; run: {trainer.run_dir}; "
               f"samples: {grid}")


@app.command(rich_help_panel="Generation")
def sample(
    checkpoint: Annotated[Path, typer.Argument(
        help="A checkpoint directory, its run directory, or checkpoints/latest.")],
    sampler: Annotated[str | None, typer.Option(
        help="Sampler name (default: the recipe's); see difftk list-plugins --family samplers.")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Number of sampler steps.")] = None,
    n: Annotated[int, typer.Option("-n", "--num", help="Number of samples.")] = 64,
    output: Annotated[Path, typer.Option(
        "-o", "--output", help="Output: .png writes a grid (or scatter plot), .npz the arrays.")
    ] = Path("samples.png"),
    seed: Annotated[int, typer.Option(help="Seed of the initial noise.")] = 0,
    ema: Annotated[bool, typer.Option(help="Use the EMA weights (--no-ema: raw weights).")] = True,
    set_: SetOption = None,
    device: Annotated[str, typer.Option(help='"auto", "cpu" or "cuda".')] = "auto",
):
    """Draw samples from a trained checkpoint into a PNG grid or an .npz file."""
    try:
        import numpy as np
        import torch

        from difftk.eval.figures import sample_figure, save_png
        from difftk.recipe import validate
        from difftk.registry import default_registry
        from difftk.train.restore import restore
        from difftk.train.runtime import make_runtime

        if output.suffix not in (".png", ".npz"):
            raise DifftkError(f"{output}: the output must end in .png or .npz")
        dev = make_runtime(device).device
        restored = restore(checkpoint, dev, use_ema=ema)
        data = restored.recipe.to_dict()
        overrides = list(set_ or [])
        if sampler is not None:
            overrides.insert(0, f'sampler.name="{sampler}"')
        if steps is not None:
            overrides.append(f"sampler.steps={steps}")
        from difftk.recipe import apply_overrides

        problems = apply_overrides(data, overrides)
        if problems:
            from difftk.errors import RecipeError

            raise RecipeError(problems, "--set")
        chosen = validate(data, default_registry(), "--set").parts["sampler"]
        gen = torch.Generator(dev).manual_seed(seed)
        noise = torch.randn((n, *restored.spec.shape), generator=gen, device=dev)
        result = chosen.sample(restored.denoiser, noise, gen)
        if output.suffix == ".npz":
            output.parent.mkdir(parents=True, exist_ok=True)
            np.savez(output, samples=result.x.cpu().numpy())
        else:
            save_png(sample_figure(result.x), output)
    except DifftkError as exc:
        raise _fail(exc) from None
    typer.echo(f"{n} samples from step {restored.step} with {chosen.name} "
               f"({result.nfe} network evaluations each) -> {output}")


@app.command("list-plugins", rich_help_panel="Plugins")
def list_plugins(
    family: Annotated[str | None, typer.Option(
        help="Only this family, e.g. weights, schedules, samplers.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
):
    """List every component per family: name, provider, summary, parameters with defaults."""
    from difftk.families import BY_NAME, FAMILIES
    from difftk.registry import default_registry

    if family is not None and family not in BY_NAME:
        import difflib

        close = difflib.get_close_matches(family, list(BY_NAME), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        typer.echo(f'error: no family named "{family}"{hint} (families: '
                   f"{', '.join(BY_NAME)})", err=True)
        raise typer.Exit(2)
    registry = default_registry()
    rows = {}
    for fam in FAMILIES:
        if family and fam.name != family:
            continue
        rows[fam.name] = [{
            "name": e.name,
            "provider": e.provider.package,
            "version": e.provider.version,
            "builtin": e.provider.builtin,
            "summary": e.cls.summary(),
            "parameters": e.cls.parameters(),
        } for e in (registry.get(fam.name, n) for n in registry.names(fam.name))]
    failures = [{"package": f.package, "version": f.version, "error": f.error}
                for f in registry.failures]
    if as_json:
        typer.echo(json.dumps({"families": rows, "failed_plugins": failures}, indent=1,
                              default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for fam_name, items in rows.items():
        fam = BY_NAME[fam_name]
        table = Table(title=f"{fam_name}  [{fam.section}]", title_justify="left", expand=False)
        table.add_column("name", style="bold")
        table.add_column("provider")
        table.add_column("summary", overflow="fold")
        table.add_column("parameters (default)", overflow="fold")
        for item in items:
            provider = "builtin" if item["builtin"] else f"{item['provider']} {item['version']}"
            params = ", ".join(f"{p['name']}={p['default']!r}" if not p["required"]
                               else f"{p['name']} (required)" for p in item["parameters"])
            table.add_row(item["name"], provider, item["summary"], params)
        console.print(table)
    for f in failures:
        console.print(f"[red]failed to load[/red] {f['package']} {f['version']}: {f['error']}")


@app.command(rich_help_panel="Inspection")
def validate(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe to check.")],
    set_: SetOption = None,
):
    """Print the fully resolved recipe (every default filled in), or each error with its path."""
    try:
        from difftk.recipe import load_recipe

        r = load_recipe(recipe, set_)
    except DifftkError as exc:
        raise _fail(exc) from None
    sys.stdout.write(r.to_toml())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
