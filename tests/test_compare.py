"""`difftk compare` on two tiny runs: the table has each run's final metrics and exactly the
recipe fields that differ; the curves are the scalars both logged, read alike from
metrics.jsonl and from TensorBoard events."""

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from difftk.cli import app

runner = CliRunner()
TINY = ["model.width=16", "model.depth=1", "train.batch_size=32", "train.steps=4", "log.every=2",
        "log.num_samples=8", "sampler.steps=2", "log.val_every=2", "log.checkpoint_every=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    recipe = Path(__file__).resolve().parent.parent / "recipes/toy2d.toml"
    settings = {"a": ["optimizer.lr=0.003", 'log.backends=["tensorboard", "jsonl"]'],
                "b": ["optimizer.lr=0.001", 'weight.name="uniform"']}
    for name, extra in settings.items():
        args = ["train", str(recipe), "--no-progress"]
        for s in [f'run.out_dir="{root}"', f'run.name="{name}"', *TINY, *extra]:
            args += ["--set", s]
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    return root / "a", root / "b"


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_compare_writes_the_table_and_the_shared_curves(runs, tmp_path):
    from difftk.analysis.run_comparison import read_run

    out = tmp_path / "cmp"
    res = runner.invoke(app, ["compare", *map(str, runs), "-o", str(out)])
    assert res.exit_code == 0, res.output
    table = read_csv(out / "comparison.csv")
    assert [r["run"] for r in table] == ["a", "b"]
    assert [int(r["step"]) for r in table] == [4, 4]
    fields = [c for c in table[0] if "." in c and not c.startswith(("loss/", "eval/"))]
    # the EDM weighting's own parameters are absent from the uniform one's: they differ too
    assert sorted(fields) == ["log.backends", "optimizer.lr", "weight.name",
                              "weight.relative_to", "weight.sigma_data"]
    assert [r["weight.name"] for r in table] == ["edm", "uniform"]
    assert table[0]["weight.sigma_data"] != "" and table[1]["weight.sigma_data"] == ""
    a, b = read_run(runs[0]), read_run(runs[1])
    assert (a.source, b.source) == ("metrics.jsonl", "tb")
    for row, run in zip(table, (a, b), strict=True):
        for tag in ("loss/train", "loss/validation"):  # the final metrics are the last values
            assert float(row[tag]) == pytest.approx(run.scalars[tag][1][-1], rel=1e-6)
            assert list(run.scalars[tag][0]) == [2, 4]

    curves = read_csv(out / "curves.csv")
    tags = {r["tag"] for r in curves}
    assert {"loss/train", "loss/validation", "lr"} <= tags
    assert tags == set(a.scalars) & set(b.scalars)
    assert (out / "curves.png").stat().st_size > 0
    chosen = runner.invoke(app, ["compare", *map(str, runs), "-o", str(out), "--tags",
                                 "loss/*"])
    assert chosen.exit_code == 0, chosen.output
    assert {r["tag"] for r in read_csv(out / "curves.csv")} == {"loss/train", "loss/validation"}


def test_jsonl_and_tensorboard_give_the_same_curves(runs):
    from difftk.analysis.run_comparison import _jsonl_scalars, _tensorboard_scalars

    jsonl, tb = _jsonl_scalars(runs[0] / "metrics.jsonl"), _tensorboard_scalars(runs[0] / "tb")
    assert set(jsonl) == set(tb)
    for tag, (steps, values) in jsonl.items():
        assert np.array_equal(steps, tb[tag][0])
        assert np.allclose(values, tb[tag][1], rtol=1e-6)  # TensorBoard keeps float32


@pytest.mark.parametrize("args, message", [
    (["--tags", "nothing/*"], '--tags "nothing/*" matches no scalar'),
    (["NOT_A_RUN"], "not a run directory"),
])
def test_compare_refuses_bad_input_in_one_sentence(runs, tmp_path, args, message):
    extra = [str(tmp_path / a) if a == "NOT_A_RUN" else a for a in args]
    res = runner.invoke(app, ["compare", *map(str, runs), *extra, "-o", str(tmp_path / "o")])
    assert res.exit_code != 0
    assert message in res.stderr and "Traceback" not in res.stderr
