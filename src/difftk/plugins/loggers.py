"""Built-in logging backends: TensorBoard (the default), JSON lines, CSV, and Weights & Biases
where the wandb package is installed (pip install "difftk[wandb]")."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from difftk.hookspecs import hookimpl
from difftk.logger import Logger, LogWriter, RunInfo
from difftk.optional_package import OptionalPackage


class TensorBoardWriter(LogWriter):
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def scalar(self, tag, value, step):
        self.writer.add_scalar(tag, value, step)

    def histogram(self, tag, values, step):
        self.writer.add_histogram(tag, values, step)

    def image(self, tag, image, step):
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def text(self, tag, text, step):
        self.writer.add_text(tag, text, step)

    def hparams(self, config, metrics):
        # The hparams plugin's three summaries, written into this run's own events: its
        # table then shows the config beside the last value of each metric's scalar series
        # (SummaryWriter.add_hparams would start a separate run in a sub-folder instead).
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(config, metrics):
            self.writer.file_writer.add_summary(summary)

    def flush(self):
        self.writer.flush()

    def close(self):
        self.writer.close()


class TensorBoard(Logger):
    """TensorBoard events in runs/<name>/tb, with the recipe and final metrics as hparams."""

    name = "tensorboard"

    def open(self, run: RunInfo) -> LogWriter:
        return TensorBoardWriter(run.run_dir / "tb")


class AppendedFileWriter(LogWriter):
    """A text file in the run directory, appended to (a resumed run continues it) one line
    at a time (line buffering: a killed job keeps every record written before it died)."""

    def __init__(self, path: Path, newline: str | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fresh = not path.is_file() or path.stat().st_size == 0
        self.file = open(path, "a", buffering=1, newline=newline, encoding="utf-8")

    def flush(self):
        self.file.flush()

    def close(self):
        self.file.close()


class JsonLinesWriter(AppendedFileWriter):
    def _write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record, allow_nan=True) + "\n")

    def scalar(self, tag, value, step):
        self._write({"step": step, "tag": tag, "value": float(value)})

    def text(self, tag, text, step):
        self._write({"step": step, "tag": tag, "text": text})


class JsonLines(Logger):
    """Scalars and text as JSON lines, {"step", "tag", "value"} (or "text"), in the run directory."""

    name = "jsonl"
    file: str = Field("metrics.jsonl", min_length=1, description="file name inside the run "
                      "directory (appended to when the run resumes)")

    def open(self, run: RunInfo) -> LogWriter:
        return JsonLinesWriter(inside(run, self.file))


class CsvWriter(AppendedFileWriter):
    COLUMNS = ("step", "tag", "value")

    def __init__(self, path: Path):
        super().__init__(path, newline="")
        self.rows = csv.writer(self.file)
        if self.fresh:
            self.rows.writerow(self.COLUMNS)

    def scalar(self, tag, value, step):
        self.rows.writerow((step, tag, repr(float(value))))


class Csv(Logger):
    """Scalars as CSV rows step,tag,value in the run directory (pandas, spreadsheets)."""

    name = "csv"
    file: str = Field("metrics.csv", min_length=1, description="file name inside the run "
                      "directory (appended to when the run resumes)")

    def open(self, run: RunInfo) -> LogWriter:
        return CsvWriter(inside(run, self.file))


def inside(run: RunInfo, file: str) -> Path:
    """run_dir/file, refused when it would leave the run directory."""
    from difftk.errors import DifftkError

    path = (run.run_dir / file).resolve()
    if not path.is_relative_to(run.run_dir.resolve()):
        raise DifftkError(f'the log file "{file}" is outside the run directory; give a name '
                          "inside it")
    return path


class WandbWriter(LogWriter):
    def __init__(self, settings: Wandb, run: RunInfo):
        import wandb

        self.wandb = wandb
        run.run_dir.mkdir(parents=True, exist_ok=True)
        # The run's wandb id is kept in the run directory, so a resumed run continues the
        # same wandb run instead of starting a second one.
        id_file = run.run_dir / "wandb-run-id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
        try:
            self.run = wandb.init(
                project=settings.project, entity=settings.entity, group=settings.group,
                tags=settings.tags or None, name=run.name, config=run.config, id=run_id,
                resume="allow", dir=str(run.run_dir), mode=settings.mode,
                settings=wandb.Settings(console="off", silent=True))
        except wandb.errors.Error as exc:
            from difftk.errors import DifftkError

            raise DifftkError(f"wandb could not start a run ({exc}); log in with wandb login, "
                              'or set mode = "offline" in the wandb entry of log.backends') \
                from None
        self.last_step = 0

    def _log(self, data: dict[str, Any], step: int) -> None:
        # wandb drops a record whose step is below one already logged (the recipe's text is
        # logged at step 0 when a resumed run starts later): keep steps non-decreasing.
        self.last_step = max(self.last_step, step)
        self.run.log(data, step=self.last_step)

    def scalar(self, tag, value, step):
        self._log({tag: value}, step)

    def histogram(self, tag, values, step):
        self._log({tag: self.wandb.Histogram(np.asarray(values))}, step)

    def image(self, tag, image, step):
        self._log({tag: self.wandb.Image(image)}, step)

    def text(self, tag, text, step):
        import html

        self._log({tag: self.wandb.Html(f"<pre>{html.escape(text)}</pre>")}, step)

    def hparams(self, config, metrics):
        self.run.summary.update(metrics)

    def close(self):
        if self.run is not None:
            self.run.finish()
            self.run = None


class Wandb(Logger):
    """Weights & Biases (wandb); mode = "offline" writes runs/<name>/wandb without a network."""

    name = "wandb"
    requires: ClassVar[tuple[OptionalPackage, ...]] = (
        OptionalPackage("wandb", 'pip install "difftk[wandb]"'),)
    # The contract checks run without a network.
    example_params: ClassVar[dict[str, Any]] = {"mode": "offline"}
    project: str = Field("difftk", min_length=1, description="wandb project")
    entity: str | None = Field(None, description="wandb team or user; default: yours")
    group: str | None = Field(None, description="wandb group (e.g. one sweep)")
    tags: list[str] = Field(default_factory=list, description="wandb tags of the run")
    mode: Literal["online", "offline", "disabled"] | None = Field(
        None, description="online, offline (sync later with wandb sync) or disabled; "
        "default: $WANDB_MODE, else online")

    def open(self, run: RunInfo) -> LogWriter:
        return WandbWriter(self, run)


@hookimpl
def register_loggers(register):
    register(TensorBoard)
    register(JsonLines)
    register(Csv)
    register(Wandb)  # listed as needing difftk[wandb] where wandb is missing
