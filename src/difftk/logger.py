"""The logger contract: a named backend that a run's scalars, histograms, images and text go to.

A ``Logger`` is a component (its fields are its settings, e.g. a file name or a wandb
project); ``open`` turns it into a ``LogWriter`` for one run. A writer takes the kinds of
record its backend can hold and ignores the others (the base methods do nothing), so one
fan-out (difftk.run.run_logger) can send every record to every backend. ``log.backends``
in the recipe lists the loggers of a run; only the main process opens them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from difftk.component import Component


@dataclass(frozen=True)
class RunInfo:
    """What a backend may need to know about the run it logs."""

    run_dir: Path  # runs/<name>: a backend writes only inside it
    name: str  # run.name
    config: dict[str, Any] = field(default_factory=dict)  # the recipe's flattened fields


class LogWriter:
    """An open backend. Override the kinds of record the backend can hold; the rest are
    dropped. ``step`` is the optimizer step the record belongs to."""

    def scalar(self, tag: str, value: float, step: int) -> None:
        pass

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        pass

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An HxWx3 uint8 image."""

    def text(self, tag: str, text: str, step: int) -> None:
        pass

    def hparams(self, config: dict[str, Any], metrics: dict[str, float]) -> None:
        """The run's flattened recipe fields and its final metrics, written once at the end
        so that runs can be compared side by side."""

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Logger(Component):
    """A logging backend: where a run's metrics and figures are written."""

    family: ClassVar[str] = "loggers"

    def open(self, run: RunInfo) -> LogWriter:
        raise NotImplementedError


def flatten_config(tree: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """{"weight": {"name": "min_snr", "gamma": 5}} -> {"weight.name": "min_snr",
    "weight.gamma": 5}: the scalar types every backend's config table takes (lists and
    other values as their text)."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_config(value, f"{path}."))
        elif isinstance(value, (bool, int, float, str)):
            out[path] = value
        else:
            out[path] = str(value)
    return out
