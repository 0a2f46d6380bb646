"""difftk new-plugin: the generated package installs into a fresh environment, is listed,
trains, and passes its own test (which runs difftk.testing's contract checks)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import difftk
from difftk.cli import app
from difftk.errors import DifftkError
from difftk.families import FAMILIES
from difftk.scaffold import PluginNames, scaffold_plugin


def test_names_are_derived_from_one_spelling():
    names = PluginNames.from_name("Cosine-Bump")
    assert (names.distribution, names.package, names.component, names.class_name) == (
        "difftk-cosine-bump", "difftk_cosine_bump", "cosine_bump", "CosineBump")
    assert PluginNames.from_name("difftk-x2").distribution == "difftk-x2"


@pytest.mark.parametrize("bad", ["2fast", "my weight", "café", "class", ""])
def test_bad_names_are_one_sentence(bad, tmp_path):
    with pytest.raises(DifftkError):
        scaffold_plugin(bad, "weights", tmp_path)


def test_unknown_family_and_existing_directory(tmp_path):
    out = CliRunner().invoke(app, ["new-plugin", "x", "--family", "wieghts", "--dir", str(tmp_path)])
    every = ", ".join(sorted(f.name for f in FAMILIES))  # every family has a template
    assert out.exit_code == 1 and f"templates: {every})" in out.output
    scaffold_plugin("x", "weights", tmp_path)
    with pytest.raises(DifftkError, match="already exists"):
        scaffold_plugin("x", "weights", tmp_path)


def _run(args, cwd, env):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_scaffolded_plugin_installs_lists_trains_and_passes_its_test(tmp_path, root):
    out = CliRunner().invoke(app, ["new-plugin", "sigmoid-w", "--dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    package = tmp_path / "difftk-sigmoid-w"
    assert {p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()} == {
        "pyproject.toml", "README.md", "difftk_sigmoid_w/__init__.py", "tests/test_sigmoid_w.py"}

    # Installed the way a plugin author installs it (pip builds a wheel with the setuptools of
    # the dev extra), into a folder of its own that the child processes put first on their
    # path, beside the difftk under test: so the check holds however difftk itself was
    # installed (venv, conda, user site, system Python, PYTHONPATH) and never touches the
    # environment running the tests.
    site = tmp_path / "site"
    python = sys.executable
    under_test = Path(difftk.__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DIFFTK_LOAD_PLUGINS", "PYTHONPATH")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(under_test)])
    res = _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                "--no-index", "--no-cache-dir", "--target", str(site), str(package)], tmp_path, env)
    assert res.returncode == 0, res.stderr

    res = _run([python, "-m", "difftk.cli", "list-plugins", "--family", "weights", "--json"],
               tmp_path, env)
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)["families"]["weights"]}
    assert rows["sigmoid_w"]["provider"] == "difftk-sigmoid-w"
    assert rows["sigmoid_w"]["builtin"] is False
    assert "Kingma & Gao" in rows["sigmoid_w"]["summary"]

    sets = ['weight.name="sigmoid_w"', "weight.bias=1.0", "train.steps=3", "train.batch_size=32",
            "model.width=16", "sampler.steps=2", "log.num_samples=8", "log.val_every=0",
            "log.every=1", 'run.name="plugin"', f'run.out_dir="{tmp_path / "runs"}"']
    args = [python, "-m", "difftk.cli", "train", str(root / "recipes/toy2d.toml"), "--no-progress"]
    for item in sets:
        args += ["--set", item]
    res = _run(args, tmp_path, env)
    assert res.returncode == 0, res.stderr
    recipe = (tmp_path / "runs/plugin/recipe.toml").read_text()
    assert 'name = "sigmoid_w"' in recipe and "bias = 1.0" in recipe

    res = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
               package, env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert " passed" in res.stdout and "failed" not in res.stdout
