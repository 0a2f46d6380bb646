"""The plugin system: built-ins, lookups, broken and duplicate plugins, discovery."""

import json
import os
import subprocess
import sys
import types

import pytest
from plugin_packages import fake_distribution

from difftk import hookimpl
from difftk.errors import UnknownComponentError
from difftk.registry import Provider, build_registry

REQUIRED = {
    "schedules": {"linear", "edm"}, "targets": {"eps", "edm"},
    "weights": {"uniform", "min_snr", "edm"}, "noise_sampling": {"uniform_t", "log_normal"},
    "samplers": {"ddpm", "heun"}, "architectures": {"mlp", "unet"},
    "precision": {"fp32", "bf16", "auto"}, "clipping": {"global_norm"}, "ema": {"ema"},
    "datasets": {"toy2d", "digits"}, "optimizers": {"adam", "adamw"},
    "losses": {"mse"}, "variance": {"fixed_small", "fixed_large"},
}


def test_builtins_are_registered_through_hooks(registry):
    for family, names in REQUIRED.items():
        assert names <= set(registry.names(family)), family
        for name in names:
            provider = registry.get(family, name).provider
            assert provider.builtin and provider.package == "difftk"


def test_unknown_name_suggests_the_nearest(registry):
    with pytest.raises(UnknownComponentError) as exc:
        registry.get("weights", "min_snrr")
    msg = str(exc.value)
    assert 'did you mean "min_snr"' in msg and "uniform" in msg


def test_name_from_another_family_is_pointed_out(registry):
    with pytest.raises(UnknownComponentError, match=r"heun is a sampler, set it in \[sampler\]"):
        registry.get("weights", "heun")


def _plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_duplicate_name_names_both_providers():
    """A second "min_snr" is refused with both providers named; the built-in stays."""
    from difftk.plugins.weights import MinSNR

    class Other(MinSNR):
        """Another min_snr."""

    plugin = _plugin(register_weights=lambda register: register(Other))
    registry = build_registry([(plugin, Provider("difftk-other", "9.9", False, "other"))],
                              load_entry_points=False)
    (failure,) = registry.failures
    assert failure.package == "difftk-other"
    assert "difftk 0.1.0" in failure.error and "difftk-other 9.9" in failure.error
    assert registry.get("weights", "min_snr").cls is MinSNR


def test_wrong_base_class_is_refused():
    plugin = _plugin(register_weights=lambda register: register(dict))
    registry = build_registry([(plugin, Provider("difftk-bad", "1", False, "bad"))],
                              load_entry_points=False)
    (failure,) = registry.failures
    assert failure.package == "difftk-bad" and "not a subclass" in failure.error
    assert "min_snr" in registry.names("weights")


def _list_plugins(tmp_path, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "DIFFTK_LOAD_PLUGINS"}
    env["PYTHONPATH"] = str(tmp_path)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "difftk.cli", "list-plugins", "--json"],
                          capture_output=True, text=True, env=env)


def test_broken_plugin_is_isolated(tmp_path):
    fake_distribution(tmp_path, "difftk-broken", "raise ImportError('no module named gpu')\n")
    fake_distribution(tmp_path, "difftk-typo", """
        from difftk import hookimpl

        @hookimpl
        def register_weight(register):  # misspelt: the hook is register_weights
            pass
        """, module="typo_mod")
    out = _list_plugins(tmp_path)
    assert out.returncode == 0, out.stderr
    failed = {f["package"]: f["error"] for f in json.loads(out.stdout)["failed_plugins"]}
    assert "no module named gpu" in failed["difftk-broken"]
    assert "register_weight" in failed["difftk-typo"]
    assert "difftk-broken" in out.stderr  # reported, with the package name
    assert "min_snr" in out.stdout  # everything else still works


def test_load_plugins_env_selects(tmp_path):
    fake_distribution(tmp_path, "difftk-broken", "raise ImportError('boom')\n")
    out = _list_plugins(tmp_path, {"DIFFTK_LOAD_PLUGINS": ""})
    assert json.loads(out.stdout)["failed_plugins"] == []


def test_installed_plugin_package_is_discovered():
    """CI installs plugins/difftk-soft-min-snr; it must be listed with its provider."""
    env = {k: v for k, v in os.environ.items() if k != "DIFFTK_LOAD_PLUGINS"}
    out = subprocess.run([sys.executable, "-m", "difftk.cli", "list-plugins", "--family",
                          "weights", "--json"], capture_output=True, text=True, env=env,
                         check=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)["families"]["weights"]}
    assert rows["soft_min_snr"]["provider"] == "difftk-soft-min-snr"
    assert rows["soft_min_snr"]["builtin"] is False
    assert rows["min_snr"]["builtin"] is True
    params = {p["name"]: p["default"] for p in rows["min_snr"]["parameters"]}
    assert params["gamma"] == 5.0


def test_help_does_not_import_torch():
    code = "import sys, difftk.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
