"""Runs side by side (``difftk compare``): one table of each run's final metrics and the recipe
fields in which the runs differ, and the curves of the scalars they share, overlaid.

A run's scalars come from its ``metrics.jsonl`` where the jsonl backend wrote one (exact
floats), otherwise from its TensorBoard events (tensorboard's EventAccumulator). A step logged
twice (a resumed run repeats the steps after its last checkpoint) keeps the later value.
The final metrics are the last value of every ``loss/`` and ``eval/`` scalar, the same ones
the run hands TensorBoard's hparams table (run/run_logger.py).
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from difftk.errors import DifftkError
from difftk.logger import flatten_config
from difftk.run.run_logger import FINAL_METRIC_GROUPS

# Fields that name a run rather than describe it: always different, never compared.
IDENTITY_FIELDS = ("run.name", "run.out_dir")
MAX_CURVES = 36  # panels in one figure; more shared tags are listed, not drawn


@dataclass
class RunScalars:
    name: str
    path: Path
    recipe: dict[str, object]  # flattened recipe.toml
    scalars: dict[str, tuple[np.ndarray, np.ndarray]]  # tag -> (steps, values), by step
    source: str  # "metrics.jsonl" or "tb"

    def final(self) -> dict[str, float]:
        return {tag: float(values[-1]) for tag, (_, values) in self.scalars.items()
                if tag.startswith(FINAL_METRIC_GROUPS)}

    @property
    def last_step(self) -> int:
        return max((int(steps[-1]) for steps, _ in self.scalars.values()), default=0)


def _by_step(records: dict[str, dict[int, float]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for tag, points in records.items():
        steps = sorted(points)
        out[tag] = (np.asarray(steps, dtype=np.int64),
                    np.asarray([points[s] for s in steps], dtype=np.float64))
    return out


def _jsonl_scalars(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    records: dict[str, dict[int, float]] = {}
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                raise DifftkError(f"{path}: line {number} is not JSON") from None
            if isinstance(item, dict) and "value" in item and "tag" in item:
                records.setdefault(str(item["tag"]), {})[int(item["step"])] = float(item["value"])
    return _by_step(records)


def _tensorboard_scalars(tb_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    records: dict[str, dict[int, float]] = {}
    for tag in events.Tags().get("scalars", []):
        for event in events.Scalars(tag):  # in file order: a resumed run's later value wins
            records.setdefault(tag, {})[int(event.step)] = float(event.value)
    return _by_step(records)


def _jsonl_file(run_dir: Path, recipe: dict) -> Path | None:
    """The run's jsonl log, by the file name its [log] backends gave (default metrics.jsonl)."""
    for item in recipe.get("log", {}).get("backends", []):
        if item == "jsonl":
            return run_dir / "metrics.jsonl"
        if isinstance(item, dict) and item.get("name") == "jsonl":
            return run_dir / str(item.get("file", "metrics.jsonl"))
    return None


def read_run(run_dir: Path) -> RunScalars:
    """A run directory's recipe and scalars."""
    run_dir = Path(run_dir)
    recipe_file = run_dir / "recipe.toml"
    if not recipe_file.is_file():
        raise DifftkError(f"{run_dir}: not a run directory (it has no recipe.toml)")
    try:
        recipe = tomllib.loads(recipe_file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DifftkError(f"{recipe_file}: not a readable recipe ({exc})") from None
    jsonl = _jsonl_file(run_dir, recipe)
    if jsonl is not None and jsonl.is_file():
        scalars, source = _jsonl_scalars(jsonl), jsonl.name
    elif (run_dir / "tb").is_dir():
        scalars, source = _tensorboard_scalars(run_dir / "tb"), "tb"
    else:
        scalars, source = {}, ""
    if not scalars:
        raise DifftkError(f"{run_dir}: the run logged no scalars (no metrics.jsonl, and no "
                          "TensorBoard events in tb/)")
    return RunScalars(str(recipe.get("run", {}).get("name", run_dir.name)), run_dir,
                      flatten_config(recipe), scalars, source)


def read_runs(paths: list[Path]) -> list[RunScalars]:
    runs = [read_run(p) for p in paths]
    names = [r.name for r in runs]
    for r in runs:  # two runs of one name (two out_dirs): tell them apart by their path
        if names.count(r.name) > 1:
            r.name = str(r.path)
    return runs


def differing_fields(runs: list[RunScalars]) -> list[str]:
    """Recipe fields whose value is not the same in every run (absent counts as a value)."""
    fields: list[str] = []
    for r in runs:
        fields += [f for f in r.recipe if f not in fields]
    return [f for f in fields if f not in IDENTITY_FIELDS
            and len({repr(r.recipe.get(f)) for r in runs}) > 1]


def comparison_rows(runs: list[RunScalars]) -> list[dict]:
    """One row per run: its name, last step, the differing recipe fields, its final metrics."""
    fields = differing_fields(runs)
    metrics: list[str] = []
    for r in runs:
        metrics += [m for m in r.final() if m not in metrics]
    rows = []
    for r in runs:
        final = r.final()
        row: dict = {"run": r.name, "step": r.last_step}
        row.update({f: r.recipe.get(f, "") for f in fields})
        row.update({m: final.get(m, "") for m in metrics})
        rows.append(row)
    return rows


def shared_tags(runs: list[RunScalars], patterns: list[str] | None = None) -> list[str]:
    """Scalar tags every run logged (those matching one of the glob ``patterns``, if given),
    losses first, then evaluation metrics, then the rest, each alphabetically."""
    common = set(runs[0].scalars)
    for r in runs[1:]:
        common &= set(r.scalars)
    if patterns:
        common = {t for t in common if any(fnmatch.fnmatchcase(t, p) for p in patterns)}
    rank = {group: i for i, group in enumerate(FINAL_METRIC_GROUPS)}
    return sorted(common, key=lambda t: (rank.get(t.split("/")[0] + "/", len(rank)), t))


def curve_rows(runs: list[RunScalars], tags: list[str]) -> list[dict]:
    """The curves as long-format rows: run, tag, step, value."""
    return [{"run": r.name, "tag": tag, "step": int(s), "value": float(v)}
            for tag in tags for r in runs for s, v in zip(*r.scalars[tag], strict=True)]


def draw_curves(runs: list[RunScalars], tags: list[str]):
    """One panel per tag with every run's curve; a log axis where the values are positive and
    span more than two decades (seed 003 draws mean MSE and NLL so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(tags))
    rows = -(-len(tags) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    for ax, tag in zip(axes.flat, tags, strict=False):
        values = []
        for k, r in enumerate(runs):
            steps, v = r.scalars[tag]
            style = "o-" if len(steps) < 30 else "-"
            ax.plot(steps, v, style, color=f"C{k % 10}", label=r.name, ms=3, lw=1.2)
            values.append(v[np.isfinite(v)])
        finite = np.concatenate(values) if values else np.array([])
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("log")
        ax.set_title(tag, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(tags):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(runs), 4), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.2 * rows)))
    return fig
