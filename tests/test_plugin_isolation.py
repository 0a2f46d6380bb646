"""A broken plugin is reported by name and left out; difftk and the other plugins keep working.

Each case is a throwaway plugin package (an entry point on a temporary sys.path) or a
plugin file of a --plugins-dir folder, run through the real CLI where the user would see it.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import torch
from plugin_packages import fake_distribution, run_cli

from difftk import hookimpl
from difftk.errors import PluginError
from difftk.recipe import load_recipe
from difftk.registry import Provider, build_registry

GOOD_WEIGHTING = """
    import torch
    from difftk import hookimpl, Weighting

    class Flat(Weighting):
        \"\"\"w = 2 everywhere.\"\"\"
        name = "{name}"

        def __call__(self, snr):
            return torch.full_like(snr, 2.0)

    @hookimpl
    def register_weights(register):
        register(Flat)
    """


def _weighting_module(body: str, name: str = "bad_weight") -> types.ModuleType:
    """An in-process plugin module whose weighting's __call__ is ``body`` (a function)."""
    from difftk.diffusion.weighting import Weighting

    cls = type("Bad", (Weighting,), {"__call__": body, "name": name, "__module__": "bad_plugin",
                                     "__doc__": "A broken weighting."})
    module = types.ModuleType("bad_plugin")
    module.register_weights = hookimpl(lambda register: register(cls))
    return module


def _plugin_registry(module):
    return build_registry([(module, Provider("difftk-bad", "2.0", False, "bad_plugin"))],
                          load_entry_points=False)


def _one_sentence(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1, stderr


@pytest.mark.parametrize("body, expected", [
    (lambda self, snr: None, "returned NoneType, not a torch.Tensor"),
    (lambda self, snr: snr[:1], "returned a tensor of shape [1], not [5]"),
    (lambda self, snr: 1 / 0, "failed in __call__(): ZeroDivisionError"),
])
def test_a_weighting_that_breaks_its_contract_is_named(body, expected):
    registry = _plugin_registry(_weighting_module(body))
    weighting = registry.get("weights", "bad_weight").cls()
    with pytest.raises(PluginError) as exc:
        weighting(torch.ones(5))
    assert "difftk-bad 2.0" in str(exc.value) and 'weighting "bad_weight"' in str(exc.value)
    assert expected in str(exc.value)


def test_a_plugin_weighting_that_works_is_untouched():
    registry = _plugin_registry(_weighting_module(lambda self, snr: snr * 2))
    weighting = registry.get("weights", "bad_weight").cls()
    assert torch.equal(weighting(torch.ones(3)), torch.full((3,), 2.0))


def test_the_figure_code_names_the_plugin_whose_weighting_returns_none(tmp_path):
    fake_distribution(tmp_path, "difftk-none-weight", GOOD_WEIGHTING.format(name="none_w")
                      .replace("torch.full_like(snr, 2.0)", "None"))
    out = run_cli(tmp_path, "plot", "weights", "none_w", "-o", str(tmp_path / "w.png"))
    assert out.returncode != 0
    _one_sentence(out.stderr)
    assert "difftk-none-weight 1.0" in out.stderr and "NoneType" in out.stderr


def test_broken_packages_are_named_and_left_out_and_the_rest_keeps_working(tmp_path):
    """Wrong base class, duplicate name, sys.exit on import, a missing dependency: one
    list-plugins run (subprocesses are slow) sees each reported by name."""
    fake_distribution(tmp_path, "difftk-dict", """
        from difftk import hookimpl

        @hookimpl
        def register_weights(register):
            register(dict)
        """, module="dict_mod")
    fake_distribution(tmp_path, "difftk-dup", GOOD_WEIGHTING.format(name="min_snr"),
                      module="dup_mod")
    fake_distribution(tmp_path, "difftk-fine", GOOD_WEIGHTING.format(name="flat"),
                      module="fine_mod")
    fake_distribution(tmp_path, "difftk-exits", "import sys\nsys.exit(3)\n", module="exit_mod")
    fake_distribution(tmp_path, "difftk-needs", "import difftk_absent_dependency\n",
                      module="needs_mod")
    listed = run_cli(tmp_path, "list-plugins", "--json")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    failed = {f["package"]: f["error"] for f in json.loads(listed.stdout)["failed_plugins"]}
    assert "not a subclass" in failed["difftk-dict"]
    assert "two providers" in failed["difftk-dup"] and "difftk 0.1.0" in failed["difftk-dup"]
    assert "sys.exit(3)" in failed["difftk-exits"]
    assert 'needs the package "difftk_absent_dependency", which is not installed' \
        in failed["difftk-needs"]
    for package in failed:
        assert package in listed.stderr  # each warned about by name
    rows = {r["name"]: r for r in json.loads(listed.stdout)["families"]["weights"]}
    assert rows["min_snr"]["builtin"] and rows["flat"]["provider"] == "difftk-fine"
    checked = run_cli(tmp_path, "validate", "recipes/toy2d.toml", "--set", 'weight.name="flat"',
                      cwd=_root())
    assert checked.returncode == 0, checked.stderr
    assert "difftk-dict" in checked.stderr  # each command still reports the broken ones


def test_a_plugin_crashing_while_checking_parameters_is_a_recipe_problem(tmp_path):
    from pydantic import model_validator

    from difftk.diffusion.weighting import Weighting

    def explode(self):
        raise RuntimeError("plugin bug")

    cls = type("Crash", (Weighting,), {"name": "crash", "__module__": "crash_plugin",
                                       "_explode": model_validator(mode="after")(explode)})
    module = types.ModuleType("crash_plugin")
    module.register_weights = hookimpl(lambda register: register(cls))
    registry = build_registry([(module, Provider("difftk-crash", "1", False, "crash_plugin"))],
                              load_entry_points=False)
    with pytest.raises(Exception) as exc:
        load_recipe(_root() / "recipes/toy2d.toml", ['weight.name="crash"'], registry=registry,
                    warn=False)
    assert "difftk-crash 1" in str(exc.value) and "RuntimeError: plugin bug" in str(exc.value)


def _root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


# --plugins-dir: every *.py of a folder is a plugin module (as datasette's --plugins-dir).

def _plugins_folder(tmp_path):
    folder = tmp_path / "my_plugins"
    folder.mkdir()
    import textwrap

    (folder / "flat_weight.py").write_text(textwrap.dedent(GOOD_WEIGHTING.format(name="flat2")))
    (folder / "broken.py").write_text("def oops(:\n")
    (folder / "quits.py").write_text("raise SystemExit(1)\n")
    (folder / "_private.py").write_text("raise RuntimeError('never imported')\n")
    return folder


@pytest.mark.parametrize("how", ["option", "environment"])
def test_plugins_dir_loads_each_file_and_isolates_broken_ones(tmp_path, how):
    folder = _plugins_folder(tmp_path)
    args, env = (["--plugins-dir", str(folder)], None) if how == "option" else \
        ([], {"DIFFTK_PLUGINS_DIR": str(folder)})
    out = run_cli(tmp_path, *args, "list-plugins", "--family", "weights", "--json",
                  env_extra=env)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    data = json.loads(out.stdout)
    rows = {r["name"]: r for r in data["families"]["weights"]}
    assert rows["flat2"]["provider"] == str(folder / "flat_weight.py")
    assert not rows["flat2"]["builtin"]
    failed = {f["package"]: f["error"] for f in data["failed_plugins"]}
    assert "SyntaxError" in failed[str(folder / "broken.py")]
    assert "sys.exit(1)" in failed[str(folder / "quits.py")]
    assert not any("_private" in p for p in failed)
    if how == "environment":
        return  # the same registry; one recipe run through the option is enough
    trained = run_cli(tmp_path, *args, "validate", "recipes/toy2d.toml", "--set",
                      'weight.name="flat2"', env_extra=env, cwd=_root())
    assert trained.returncode == 0, trained.stderr
    assert 'name = "flat2"' in trained.stdout


def test_plugins_dir_that_is_not_a_folder_is_reported(tmp_path):
    registry = build_registry(load_entry_points=False, plugins_dir=str(tmp_path / "nowhere"))
    (failure,) = registry.failures
    assert "not a directory" in failure.error
    assert "min_snr" in registry.names("weights")


def test_a_sentence_the_plugin_raises_on_purpose_passes_through():
    """A plugin's DifftkError (its data set's missing file, say) is already a sentence."""
    from difftk.errors import DataError

    def refuse(self, snr):
        raise DataError("weights.csv: no such file")

    registry = _plugin_registry(_weighting_module(refuse))
    with pytest.raises(DataError, match=r"^weights.csv: no such file$"):
        registry.get("weights", "bad_weight").cls()(torch.ones(2))


def test_plugins_that_print_exit_raise_base_exceptions_or_misname_are_isolated(tmp_path):
    import textwrap

    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "flat_weight.py").write_text(textwrap.dedent(GOOD_WEIGHTING.format(name="flat3")))
    (folder / "chatty.py").write_text("print('hello from a plugin')\n")
    (folder / "exits.py").write_text("import os\nos._exit(3)\n")
    (folder / "generator_exit.py").write_text("raise GeneratorExit('plugin bug')\n")
    (folder / "own_interrupt.py").write_text("raise KeyboardInterrupt\n")
    (folder / "int_name.py").write_text(textwrap.dedent(
        GOOD_WEIGHTING.format(name="flat4")).replace('name = "flat4"', "name = 7"))
    for command in (["list-plugins", "--family", "weights", "--json"],
                    ["validate", "recipes/toy2d.toml", "--set", 'weight.name="flat3"']):
        out = run_cli(tmp_path, "--plugins-dir", str(folder), *command, cwd=_root())
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        assert "hello from a plugin" not in out.stdout and "hello from a plugin" in out.stderr
    data = json.loads(run_cli(tmp_path, "--plugins-dir", str(folder), "list-plugins",
                              "--json").stdout)
    failed = {Path(f["package"]).name: f["error"] for f in data["failed_plugins"]}
    assert "os._exit(3)" in failed["exits.py"]
    assert "GeneratorExit" in failed["generator_exit.py"]
    assert "KeyboardInterrupt" in failed["own_interrupt.py"]
    assert "the name 7" in failed["int_name.py"]
    assert "flat3" in {r["name"] for r in data["families"]["weights"]}


def test_a_plugin_that_hangs_at_import_is_named_on_stderr(tmp_path, monkeypatch):
    import difftk.plugin_guard as guard

    monkeypatch.setattr(guard, "IMPORT_WARN_SECONDS", 0.2)
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "sleepy.py").write_text("import time\ntime.sleep(1.0)\n")
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        build_registry(load_entry_points=False, plugins_dir=str(folder))
    assert "still importing plugin" in err.getvalue() and "sleepy.py" in err.getvalue()
