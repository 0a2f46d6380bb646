"""Training progress: a rich bar on a terminal, plain lines in a log file.

When stdout is a terminal the bar (on stderr) shows the step, the last logged loss and the
time left. When it is not (a log file, nohup, a batch scheduler), a bar would print nothing
until the end, so one plain line is printed to stdout every ``every`` steps instead:

    step 200/2000  loss 0.4213  images/s 5120.3  ETA 0:05:51
"""

from __future__ import annotations

import contextlib
import datetime
import math
import sys
import time
from typing import TextIO


class _Silent:
    def advance(self, step: int, loss: float) -> None:
        pass


class _Bar:
    def __init__(self, progress, task):
        self.progress, self.task = progress, task

    def advance(self, step: int, loss: float) -> None:
        text = f"loss {loss:.4f}" if math.isfinite(loss) else ""
        self.progress.update(self.task, completed=step, loss=text)


class ProgressLines:
    """One line per ``every`` steps (and at the last): step, loss, images/s, ETA.

    images/s is measured over the steps since the previous line; the ETA extrapolates the
    mean step time since the display started to the steps left.
    """

    def __init__(self, total: int, start: int, every: int, batch_size: int, stream: TextIO,
                 clock=time.perf_counter, time_left_s: float = 0.0):
        self.total, self.every, self.batch_size, self.stream = total, every, batch_size, stream
        self.time_left_s = time_left_s  # a train.time_limit still to run (0: none)
        self.clock = clock
        self.start_step, self.start_time = start, clock()
        self.line_step, self.line_time = start, self.start_time

    def advance(self, step: int, loss: float) -> None:
        if step % self.every and step != self.total or step == self.line_step:
            return
        now = self.clock()
        rate = (step - self.line_step) * self.batch_size / max(now - self.line_time, 1e-9)
        per_step = (now - self.start_time) / max(step - self.start_step, 1)
        left = per_step * (self.total - step)
        if self.time_left_s:  # the run ends at its time limit if that comes first
            left = min(left, max(self.time_left_s - (now - self.start_time), 0.0))
        eta = datetime.timedelta(seconds=round(left))
        shown = f"{loss:.4f}" if math.isfinite(loss) else "-"
        width = len(str(self.total))
        self.stream.write(f"step {step:>{width}}/{self.total}  loss {shown}  "
                          f"images/s {rate:.1f}  ETA {eta}\n")
        self.stream.flush()  # a log file is block-buffered; a line must appear when printed
        self.line_step, self.line_time = step, now


@contextlib.contextmanager
def training_progress(total: int, start: int, enabled: bool = True, label: str = "training",
                      every: int = 100, batch_size: int = 1, stream: TextIO | None = None,
                      time_left_s: float = 0.0):
    """The progress display of a run from step ``start`` to ``total``; ``advance(step, loss)``
    after each step. ``stream`` (default stdout) decides: a terminal gets the bar."""
    if not enabled:
        yield _Silent()
        return
    stream = sys.stdout if stream is None else stream
    if not stream.isatty():
        yield ProgressLines(total, start, every, batch_size, stream, time_left_s=time_left_s)
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
