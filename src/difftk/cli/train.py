"""difftk train: run a recipe (in one process, or one per device under torchrun)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption, app, fail
from difftk.errors import DifftkError


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
    runtime = None
    try:
        from difftk.recipe import load_recipe
        from difftk.train.runtime import make_runtime
        from difftk.train.trainer import Trainer

        r = load_recipe(recipe, set_)
        runtime = make_runtime(r.run.device, distributed=True)
        trainer = Trainer(r, runtime, resume=resume, progress=progress)
        t0 = __import__("time").perf_counter()
        grid = trainer.fit()
        elapsed = __import__("time").perf_counter() - t0
    except DifftkError as exc:
        from difftk.train.runtime import announce_failure

        raise fail(announce_failure(exc, runtime)) from None
    runtime.close()
    if runtime.is_main:
        typer.echo(f"trained {trainer.step} steps in {elapsed:.0f}s; run: {trainer.run_dir}; "
                   f"samples: {grid}")
