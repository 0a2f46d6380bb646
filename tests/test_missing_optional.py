"""A built-in whose optional package is missing (diffusers_unet2d, wandb, hf_datasets) is
listed with the command that installs it, and a recipe that chooses it ends in that sentence.

The packages are hidden by making their import fail (``sys.modules[name] = None``, which is
what ``import`` and ``importlib.util.find_spec`` consult first), never by uninstalling.
"""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from pydantic import Field

import difftk
from difftk import hookimpl
from difftk.errors import RecipeError, UnknownComponentError
from difftk.optional_package import OptionalPackage
from difftk.recipe import recipe_from_text
from difftk.registry import Provider, build_registry

# family -> (component, the package it needs, the extra that installs it)
OPTIONAL = {"architectures": ("diffusers_unet2d", "diffusers", "interop"),
            "loggers": ("wandb", "wandb", "wandb"),
            "datasets": ("hf_datasets", "datasets", "hf")}
HIDDEN = [package for _, package, _ in OPTIONAL.values()]


@pytest.fixture
def hidden(monkeypatch):
    """A registry built while diffusers, wandb and datasets cannot be imported."""
    for package in HIDDEN:
        monkeypatch.setitem(sys.modules, package, None)
    return build_registry(load_entry_points=False)


def test_components_without_their_package_are_kept_apart(hidden):
    for family, (name, package, extra) in OPTIONAL.items():
        assert name not in hidden.names(family), family
        missing = hidden.unavailable[family][name]
        assert missing.entry.provider.builtin and missing.package.module == package
        assert missing.package.status() == f'needs `pip install "difftk[{extra}]"`'
    # Usable only where installed: what remains is the core install's loggers.
    assert hidden.names("loggers") == ["csv", "jsonl", "tensorboard"]


def test_choosing_one_names_the_install_command(hidden):
    with pytest.raises(UnknownComponentError) as exc:
        hidden.get("architectures", "diffusers_unet2d")
    assert str(exc.value) == ('the architecture "diffusers_unet2d" needs the package '
                              '"diffusers", which is not installed (pip install '
                              '"difftk[interop]")')
    recipe = (Path(__file__).resolve().parents[1] / "recipes" / "edm.toml").read_text()
    recipe = recipe.replace('[model]\nname = "unet"', '[model]\nname = "diffusers_unet2d"')
    with pytest.raises(RecipeError) as exc:
        recipe_from_text(recipe.replace('[log]', '[log]\nbackends = ["wandb"]'), hidden)
    paths = dict(exc.value.problems)
    assert 'pip install "difftk[wandb]"' in paths["log.backends.0"]
    assert 'pip install "difftk[interop]"' in paths["model.name"]


def test_installed_packages_leave_nothing_unavailable(registry):
    """Where the extras are installed (CI installs them all), every one is usable."""
    for family, (name, package, _) in OPTIONAL.items():
        assert OptionalPackage(package, "").installed()
        assert name in registry.names(family)
    assert registry.unavailable == {}


def test_a_plugin_can_declare_its_own_optional_package():
    class NeedsGpuLib(difftk.Weighting):
        """w = SNR, through a package that is not installed."""

        name = "gpu_snr"
        requires = (OptionalPackage("difftk_no_such_package", "pip install difftk-gpu-snr"),)
        gamma: float = Field(1.0, description="unused")

        def __call__(self, snr):
            return snr

    plugin = types.ModuleType("gpu_plugin")
    plugin.register_weights = hookimpl(lambda register: register(NeedsGpuLib))
    registry = build_registry([(plugin, Provider("difftk-gpu-snr", "1.0", False, "gpu"))],
                              load_entry_points=False)
    assert "gpu_snr" not in registry.names("weights") and not registry.failures
    with pytest.raises(UnknownComponentError, match="pip install difftk-gpu-snr"):
        registry.get("weights", "gpu_snr")


HIDE_AND_RUN = ("import sys\n"
                f"for name in {HIDDEN!r}: sys.modules[name] = None\n"
                "from difftk.cli import main\n"
                "sys.argv = ['difftk', *sys.argv[1:]]\n"
                "main()\n")


def _difftk_hiding_packages(*args):
    env = {**os.environ, "PYTHONPATH": str(Path(difftk.__file__).resolve().parents[1]),
           "COLUMNS": "250"}  # a table wide enough that no cell folds
    return subprocess.run([sys.executable, "-c", HIDE_AND_RUN, *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_list_plugins_and_a_recipe_on_the_command_line(root):
    out = _difftk_hiding_packages("list-plugins", "--json")
    assert out.returncode == 0, out.stderr
    families = json.loads(out.stdout)["families"]
    for family, (name, _, extra) in OPTIONAL.items():
        rows = {r["name"]: r for r in families[family]}
        assert rows[name]["available"] is False, family
        assert rows[name]["status"] == f'needs `pip install "difftk[{extra}]"`'
    assert rows["hf_datasets"]["parameters"]  # still documented: what it would take
    assert {r["status"] for r in families["weights"]} == {"ok"}

    out = _difftk_hiding_packages("list-plugins", "--family", "loggers")
    assert out.returncode == 0 and 'needs `pip install "difftk[wandb]"`' in out.stdout

    out = _difftk_hiding_packages("validate", str(root / "recipes/toy2d.toml"), "--set",
                                  "log.backends=wandb")
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].endswith('log.backends.0: the logger "wandb" needs the package "wandb", '
                             'which is not installed (pip install "difftk[wandb]")')
