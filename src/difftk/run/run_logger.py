"""The one place a run writes logs: every record to every backend of ``log.backends``, only
on the main rank.

Backends open on the first record (a run that logs nothing creates no files). Each scalar's
last value is kept, so that ``close`` can hand the loss and evaluation metrics to each
backend's hparams record beside the recipe's flattened fields (TensorBoard's hparams table,
wandb's config and summary).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from difftk.logger import Logger, LogWriter, RunInfo, flatten_config

# Scalar groups whose last values are a run's final metrics (hparams table).
FINAL_METRIC_GROUPS = ("loss/", "eval/")


class RunLogger:
    def __init__(self, loggers: Sequence[Logger], run: RunInfo, enabled: bool):
        self.enabled = enabled and bool(loggers)
        self.loggers = list(loggers)
        self.run = run
        self._writers: list[LogWriter] | None = None
        self._last: dict[str, float] = {}

    @classmethod
    def for_recipe(cls, recipe, run_dir: Path, enabled: bool, registry=None) -> RunLogger:
        """The backends ``recipe.log.backends`` lists (without TensorBoard when
        ``log.tensorboard`` is false), writing into ``run_dir``."""
        loggers = [part for part in recipe.loggers(registry)
                   if recipe.log.tensorboard or part.name != "tensorboard"]
        run = RunInfo(Path(run_dir), recipe.run.name, flatten_config(recipe.to_dict()))
        return cls(loggers, run, enabled)

    @property
    def writers(self) -> list[LogWriter]:
        if self._writers is None:
            self._writers = [logger.open(self.run) for logger in self.loggers] \
                if self.enabled else []
        return self._writers

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.enabled:
            self._last[tag] = float(value)
            for writer in self.writers:
                writer.scalar(tag, value, step)

    def histogram(self, tag: str, values, step: int) -> None:
        if self.enabled:
            values = np.asarray(values)
            for writer in self.writers:
                writer.histogram(tag, values, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An HxWx3 uint8 image."""
        if self.enabled:
            for writer in self.writers:
                writer.image(tag, image, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.enabled:
            for writer in self.writers:
                writer.text(tag, text, step)

    def final_metrics(self) -> dict[str, float]:
        """The last value of each loss and evaluation scalar logged."""
        return {tag: value for tag, value in self._last.items()
                if tag.startswith(FINAL_METRIC_GROUPS)}

    def flush(self) -> None:
        for writer in self._writers or []:
            writer.flush()

    def close(self) -> None:
        """Hand the hparams record to each backend (when the run logged metrics) and close."""
        if self._writers is None:
            return
        metrics = self.final_metrics()
        for writer in self._writers:
            if metrics:
                writer.hparams(self.run.config, metrics)
            writer.close()
        self._writers = None
        self._last = {}
