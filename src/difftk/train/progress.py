"""A progress bar for long work (rich), on stderr, that shows the last logged loss."""

from __future__ import annotations

import contextlib
import math


class _Bar:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def advance(self, step: int, loss: float) -> None:
        if self.progress is not None:
            text = f"loss {loss:.4f}" if math.isfinite(loss) else ""
            self.progress.update(self.task, completed=step, loss=text)


@contextlib.contextmanager
def training_progress(total: int, start: int, enabled: bool = True, label: str = "training"):
    if not enabled:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
                        TimeElapsedColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), refresh_per_second=4)
    with progress:
        task = progress.add_task(label, total=total, completed=start, loss="")
        yield _Bar(progress, task)
