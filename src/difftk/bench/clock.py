"""Wall-clock time of device work: the bench (never the library) synchronises.

On CUDA the host runs ahead of the device, so a time read is only meaningful after
``torch.cuda.synchronize``; on the CPU every operation has finished when it returns.
"""

from __future__ import annotations

import statistics
import time

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    """The host clock once every queued operation on ``device`` has finished."""
    synchronize(device)
    return time.perf_counter()


def timed(device: torch.device, work) -> float:
    """Seconds ``work()`` takes on ``device``, from an idle device to an idle device."""
    start = now(device)
    work()
    return now(device) - start


def median(values: list[float]) -> float:
    """The median: robust to the odd step a loaded machine slows down."""
    return statistics.median(values) if values else float("nan")
