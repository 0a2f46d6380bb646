"""One training run as a process lives it: lock, resume or start, train, stop cleanly.

``difftk train`` calls ``run_training``; the Trainer itself knows nothing of processes.
Here the run directory is locked for one writer (train/run_lock.py), ``--resume-or-start``
decides between resuming and starting, SIGINT/SIGTERM end in a saved checkpoint
(train/interrupt.py), and an OSError (read-only or full disk, a file where a directory
should be) becomes one sentence.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Literal

from difftk.errors import DifftkError
from difftk.recipe import Recipe
from difftk.run import checkpoint as ckpt_io
from difftk.run.runtime import Runtime
from difftk.train.interrupt import TrainingInterrupted, graceful_interrupts
from difftk.train.run_lock import RunLock

Resume = Literal["no", "yes", "auto"]


def os_error_sentence(exc: OSError, run_dir: Path | None = None) -> DifftkError:
    """``runs/x/checkpoints: Not a directory`` rather than a traceback; a full disk also
    says which checkpoint a resume would continue from."""
    import errno

    where = exc.filename if exc.filename is not None else \
        f"{run_dir} (writing its logs)" if run_dir is not None else "a file of the run"
    message = f"{where}: {exc.strerror or exc}"
    if exc.errno == errno.ENOSPC and run_dir is not None:
        message += f"; {ckpt_io.describe_intact(run_dir / 'checkpoints')}"
    return DifftkError(message)


def run_training(recipe: Recipe, runtime: Runtime, resume: Resume = "no",
                 progress: bool = True):
    """Train ``recipe``; returns (trainer, path of the final sample grid)."""
    from difftk.train.trainer import Trainer

    run_dir = Path(recipe.run.out_dir) / recipe.run.name
    try:
        if run_dir.exists() and not run_dir.is_dir():
            raise DifftkError(f"{run_dir}: is a file, not a run directory")
        lock = RunLock(run_dir) if runtime.is_main else None
        if lock is not None:
            lock.acquire()
        try:
            if resume == "auto":  # a requeued job: resume when there is something to resume
                resume = "yes" if ckpt_io.holds_checkpoints(run_dir / "checkpoints") else "no"
            with graceful_interrupts():
                trainer = Trainer(recipe, runtime, resume=resume == "yes", progress=progress)
                try:
                    grid = trainer.fit()
                except TrainingInterrupted as exc:
                    raise _saved_on_interrupt(trainer, exc.signum) from None
                except DifftkError:
                    # what the run logged reaches the disk before the process ends (under
                    # torchrun it ends without Python's shutdown: Runtime.exit_process)
                    trainer.logger.close()
                    raise
        finally:
            if lock is not None:
                lock.release()
    except OSError as exc:
        raise os_error_sentence(exc, run_dir) from None
    return trainer, grid


def _saved_on_interrupt(trainer, signum: int) -> TrainingInterrupted:
    path = trainer.save()
    trainer.logger.close()
    name = signal.Signals(signum).name
    saved = f"saved checkpoint {path}" if path is not None else "rank 0 saved the checkpoint"
    return TrainingInterrupted(
        signum, f"interrupted by {name} after step {trainer.step}; {saved}; "
                "to continue, run the same command with --resume (or --resume-or-start)")
