"""Logging backends (log.backends): TensorBoard, JSON lines, CSV and wandb (offline), several
at once, with TensorBoard's hparams table fed the recipe and the final metrics."""

import csv
import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from difftk.cli import app
from difftk.errors import RecipeError
from difftk.logger import RunInfo, flatten_config
from difftk.recipe import load_recipe
from difftk.run.run_logger import RunLogger

TINY = ["model.width=16", "model.depth=1", "train.batch_size=32", "train.steps=6",
        "log.every=2", "log.val_every=3", "log.num_samples=4", "log.checkpoint_every=0",
        "sampler.steps=2"]


def _train(root, tmp_path, *sets, name="logged"):
    args = ["train", str(root / "recipes/toy2d.toml"), "--no-progress", "--set",
            f'run.out_dir="{tmp_path}"', "--set", f'run.name="{name}"']
    for item in [*TINY, *sets]:
        args += ["--set", item]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    return tmp_path / name


def _events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return events


def _hparams(run_dir):
    """(hparams, metric tags) of the hparams plugin's records in the run's events."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import metadata

    hparams, metrics = {}, []
    for path in sorted((run_dir / "tb").glob("events.out.tfevents.*")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != metadata.PLUGIN_NAME:
                    continue
                content = value.metadata.plugin_data.content
                if value.tag == metadata.SESSION_START_INFO_TAG:
                    start = metadata.parse_session_start_info_plugin_data(content)
                    hparams = {k: getattr(v, v.WhichOneof("kind"))
                               for k, v in start.hparams.items()}
                elif value.tag == metadata.EXPERIMENT_TAG:
                    experiment = metadata.parse_experiment_plugin_data(content)
                    metrics = [m.name.tag for m in experiment.metric_infos]
    return hparams, metrics


def test_two_backends_write_the_same_losses(root, tmp_path):
    run = _train(root, tmp_path, 'log.backends=["tensorboard", "jsonl"]')
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    jsonl_loss = [(r["step"], r["value"]) for r in records if r.get("tag") == "loss/train"]
    events = _events(run)
    tb_loss = [(e.step, e.value) for e in events.Scalars("loss/train")]
    assert [s for s, _ in jsonl_loss] == [2, 4, 6]
    assert [s for s, _ in tb_loss] == [2, 4, 6]
    # TensorBoard stores float32: the same values to its precision
    assert np.allclose([v for _, v in jsonl_loss], [v for _, v in tb_loss], rtol=1e-6, atol=0)
    assert any(r.get("tag") == "recipe" and "[weight]" in r["text"] for r in records)
    assert "loss/validation" in {r.get("tag") for r in records}
    # histograms and images go to TensorBoard only (JSON lines take scalars and text)
    assert events.Tags()["histograms"] and events.Tags()["images"]

    hparams, metrics = _hparams(run)
    assert hparams["run.name"] == "logged" and hparams["train.steps"] == 6
    assert hparams["model.name"] == "mlp" and hparams["log.backends"] == "['tensorboard', 'jsonl']"
    assert {"loss/train", "loss/validation"} <= set(metrics)
    assert not any(m.startswith(("lr", "grad_norm", "loss_by_sigma")) for m in metrics)


def test_csv_rows_and_no_tensorboard_when_not_listed(root, tmp_path):
    run = _train(root, tmp_path, "log.backends=csv")  # one name: a list of one
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "tag", "value"]
    loss = [(int(s), float(v)) for s, tag, v in rows[1:] if tag == "loss/train"]
    assert [s for s, _ in loss] == [2, 4, 6] and all(np.isfinite(v) for _, v in loss)
    assert not (run / "tb").exists()


def test_tensorboard_false_drops_it_from_the_backends(root, tmp_path):
    run = _train(root, tmp_path, 'log.backends=["tensorboard", "jsonl"]',
                 "log.tensorboard=false")
    assert (run / "metrics.jsonl").stat().st_size > 0 and not (run / "tb").exists()


def test_wandb_offline_run(root, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    # mode in the entry, not only $WANDB_MODE: wandb reads the environment once a process
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = _train(root, tmp_path, 'log.backends=["jsonl", {name = "wandb", project = "tiny", '
                                 'mode = "offline"}]')
    run_id = (run / "wandb-run-id").read_text()
    offline = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 1, list((run / "wandb").iterdir())
    assert list(offline[0].glob("*.wandb")), "no wandb records written"
    # The records file (protobuf, no public reader) holds each history key and JSON value
    # as text: every loss the JSON lines hold is in it, and the samples grid is a media file.
    # wandb's service process writes the file after finish() returns: wait for it.
    deadline = time.monotonic() + 60
    while b"loss/train" not in (raw := next(offline[0].glob("*.wandb")).read_bytes()) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["value"] for r in records if r.get("tag") == "loss/train"]
    assert len(losses) == 3 and b"loss/train" in raw
    assert all(json.dumps(v).encode() in raw for v in losses)
    assert list(offline[0].glob("files/media/images/samples_6_*.png"))


def test_only_an_enabled_logger_writes(tmp_path):
    from difftk.plugins.loggers import JsonLines, TensorBoard

    run = RunInfo(tmp_path / "run", "run")
    off = RunLogger([TensorBoard(), JsonLines()], run, enabled=False)  # not the main rank
    off.scalar("loss/train", 1.0, 1)
    off.text("recipe", "x")
    off.close()
    assert not (tmp_path / "run").exists()
    on = RunLogger([JsonLines()], run, enabled=True)
    on.scalar("loss/train", 0.5, 1)
    on.scalar("lr", 1e-3, 1)
    on.histogram("h", np.ones(3), 1)  # a kind JSON lines does not take: dropped
    assert on.final_metrics() == {"loss/train": 0.5}
    on.close()
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"step": 1, "tag": "loss/train", "value": 0.5},
                                              {"step": 1, "tag": "lr", "value": 1e-3}]


def test_flatten_config():
    assert flatten_config({"weight": {"name": "min_snr", "gamma": 5.0},
                           "model": {"channel_mult": [1, 2]}}) == {
        "weight.name": "min_snr", "weight.gamma": 5.0, "model.channel_mult": "[1, 2]"}


@pytest.mark.parametrize("value, path, words", [
    ('["tensorboard", "jsnl"]', "log.backends.1", 'did you mean "jsonl"'),
    ('["jsonl", "jsonl"]', "log.backends.1", 'lists "jsonl" a second time'),
    ('[{file = "x.jsonl"}]', "log.backends.0", "must name a logger"),
    ('[{name = "jsonl", fil = "x"}]', "log.backends.0.fil", 'did you mean "file"'),
    ('[{name = "csv", file = ""}]', "log.backends.0.file", "at least 1 character"),
])
def test_bad_backends_name_the_entry(root, value, path, words):
    with pytest.raises(RecipeError) as info:
        load_recipe(root / "recipes/toy2d.toml", [f"log.backends={value}"])
    text = str(info.value)
    assert f": {path}: " in text and words in text, text


def test_backends_default_and_resolved_parts(root):
    recipe = load_recipe(root / "recipes/toy2d.toml")
    assert recipe.log.backends == ["tensorboard"]
    recipe = load_recipe(root / "recipes/toy2d.toml",
                         ['log.backends=["jsonl", {name = "csv", file = "m.csv"}]'])
    assert [(p.name, p.params()) for p in recipe.loggers()] == [
        ("jsonl", {"file": "metrics.jsonl"}), ("csv", {"file": "m.csv"})]
    assert "backends" in recipe.to_toml()


def test_a_log_file_outside_the_run_directory_is_refused(tmp_path):
    from difftk.errors import DifftkError
    from difftk.plugins.loggers import JsonLines

    with pytest.raises(DifftkError, match="outside the run directory"):
        JsonLines(file="../elsewhere.jsonl").open(RunInfo(tmp_path / "run", "run"))
