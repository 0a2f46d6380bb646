"""The one place a run writes logs: TensorBoard events, only on the main rank."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class RunLogger:
    def __init__(self, log_dir: Path, enabled: bool):
        self.enabled = enabled
        self._writer = None
        self.log_dir = log_dir

    @property
    def writer(self):
        if self._writer is None and self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.log_dir))
        return self._writer

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.enabled:
            self.writer.add_scalar(tag, value, step)

    def histogram(self, tag: str, values, step: int) -> None:
        if self.enabled:
            self.writer.add_histogram(tag, values, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An HxWx3 uint8 image."""
        if self.enabled:
            self.writer.add_image(tag, image, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.enabled:
            self.writer.add_text(tag, text, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
