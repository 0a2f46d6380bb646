"""Progress of a command's long work counted in items: a bar on a terminal, plain lines in a
log file (one every ``every_s`` seconds, and one at the end of a job that printed any), as
difftk train shows its steps."""

from __future__ import annotations

import contextlib
import datetime
import sys
import time


class _Lines:
    def __init__(self, total: int, label: str, unit: str, every_s: float):
        self.total, self.label, self.unit, self.every_s = total, label, unit, every_s
        self.done, self.start = 0, time.perf_counter()
        self.last, self.printed = self.start, False

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self.last < self.every_s and (self.done < self.total or not self.printed):
            return  # a job shorter than one interval prints no progress line at all
        rate = self.done / max(now - self.start, 1e-9)
        eta = datetime.timedelta(seconds=round((self.total - self.done) / max(rate, 1e-9)))
        print(f"{self.label} {self.done}/{self.total} {self.unit}  {self.unit}/s {rate:.1f}  "
              f"ETA {eta}", flush=True)
        self.last, self.printed = now, True


@contextlib.contextmanager
def counted_progress(total: int, label: str, unit: str = "items", every_s: float = 10.0):
    """``advance(n)`` after each n items of ``total``."""
    if not sys.stdout.isatty():
        yield _Lines(total, label, unit, every_s)
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

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), refresh_per_second=4)
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)
