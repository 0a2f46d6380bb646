"""Figures of a run's own parts, written to TensorBoard when training starts.

Each entry of ``RUN_FIGURES`` takes the resolved recipe and returns (tag, HxWx3 uint8
image) pairs; modules that draw a family's figure append their function here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

RUN_FIGURES: list[Callable[[object], Iterable[tuple[str, np.ndarray]]]] = []


def log_run_figures(recipe, logger) -> None:
    if not logger.enabled:
        return
    for figure in RUN_FIGURES:
        for tag, image in figure(recipe):
            logger.image(tag, image, 0)


# Modules that append their figure to RUN_FIGURES when imported.
from difftk.analysis import noise_sampling_figures, schedule_figures, weight_figures  # noqa: E402, F401
