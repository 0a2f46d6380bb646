"""difftk train: run a recipe (in one process, or one per device under torchrun)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption, fail
from difftk.errors import DifftkError


def train(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe, e.g. recipes/edm.toml")],
    set_: SetOption = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in runs/<run.name> from its latest checkpoint.")] = False,
    resume_or_start: Annotated[bool, typer.Option(
        "--resume-or-start", help="Resume when the run has a checkpoint, start it otherwise "
                                  "(one command line for a requeued batch job; also "
                                  "written --resume=auto).")] = False,
    progress: Annotated[bool, typer.Option(
        help="Show progress: a bar on stderr when stdout is a terminal, else one line "
             "(step, loss, images/s, ETA) on stdout every log.every steps.")] = True,
):
    """Train a model from a recipe; writes runs/<name>/ (recipe, checkpoints, tb, samples)."""
    from difftk.cli.app import standalone
    from difftk.recipe import load_recipe
    from difftk.run.runtime import announce_failure, make_runtime, peer_loss_reason, peer_lost
    from difftk.train.interrupt import phase_handlers
    from difftk.train.session import run_training

    if standalone():  # SIGTERM / SIGHUP / SIGINT at start-up and shutdown: a sentence
        phase_handlers()
    runtime = None
    try:
        if resume and resume_or_start:
            raise DifftkError("give --resume or --resume-or-start, not both")
        r = load_recipe(recipe, set_)
        runtime = make_runtime(r.run.device, distributed=True)
        t0 = time.perf_counter()
        mode = "auto" if resume_or_start else "yes" if resume else "no"
        trainer, grid = run_training(r, runtime, mode, progress)  # locked, SIGTERM-safe
        elapsed = time.perf_counter() - t0
    except (DifftkError, RuntimeError) as exc:  # under torchrun the sentence names the rank
        if not isinstance(exc, DifftkError):
            if runtime is None or not runtime.distributed or not peer_lost(exc):
                raise
            exc = DifftkError(
                "another process of the group ended while this one waited for it ("
                f"{peer_loss_reason(exc)}); the run stops here, and --resume continues it "
                "from its last checkpoint")
        error = announce_failure(exc, runtime)
        if runtime is None or not runtime.distributed:
            raise error from None
        runtime.exit_process(fail(error).exit_code)  # torchrun stops the other ranks
    runtime.close()
    if runtime.is_main:
        typer.echo(f"trained {trainer.step} steps in {elapsed:.0f}s; run: {trainer.run_dir}; "
                   f"samples: {grid}")
    runtime.exit_process(0)
