"""difftk new-plugin --family F for every family: each generated package's component passes
difftk.testing's contract checks as written, and its own generated tests pass."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import difftk
from difftk.families import FAMILIES
from difftk.scaffold import PluginNames, families_with_templates, scaffold_plugin
from difftk.testing import check_component

FAMILY_NAMES = [f.name for f in FAMILIES]


def _import_generated(root: Path, package: str):
    """The generated module, imported from its folder (no installation)."""
    spec = importlib.util.spec_from_file_location(package, root / package / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[package]
    return module


def test_every_family_has_a_template():
    assert families_with_templates() == sorted(FAMILY_NAMES)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_generated_component_passes_the_contract_checks(family, tmp_path):
    name = f"my-{family.replace('_', '-')}"
    root = scaffold_plugin(name, family, tmp_path)
    names = PluginNames.from_name(name)
    module = _import_generated(root, names.package)
    cls = getattr(module, names.class_name)
    assert cls.family == family and cls.name == names.component
    registered = []
    getattr(module, f"register_{family}")(register=registered.append)
    assert registered == [cls]
    check_component(cls())  # every common check and every check of the family
    readme = (root / "README.md").read_text()
    assert f"--family {family}" in readme and names.distribution in readme


def test_generated_tests_pass_as_written(tmp_path):
    """All families' generated tests in one run, the packages on the path (not installed:
    their entry-point tests skip, and test_scaffold.py covers an installed one)."""
    roots = [scaffold_plugin(f"gen-{f.replace('_', '-')}", f, tmp_path) for f in FAMILY_NAMES]
    under_test = Path(difftk.__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, roots), str(under_test)])
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          *[str(r / "tests") for r in roots]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "failed" not in res.stdout and " passed" in res.stdout
