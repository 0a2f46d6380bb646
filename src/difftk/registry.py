"""The plugin manager: built-ins and entry-point plugins, registered the same way.

Entry points (group ``difftk``) are loaded with our own loop so that one plugin that
fails to import is reported and the rest keep working (pluggy's own loader stops at
the first failure). ``DIFFTK_LOAD_PLUGINS`` is a comma list of distribution names to
load; empty loads none. Built-ins are always loaded.
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import import_module, metadata

import pluggy

from difftk import __version__, hookspecs
from difftk.errors import PluginError, UnknownComponentError
from difftk.families import BY_NAME, BY_SECTION, FAMILIES

ENTRY_POINT_GROUP = "difftk"

BUILTIN_MODULES = (
    "difftk.plugins.schedules",
    "difftk.plugins.targets",
    "difftk.plugins.weights",
    "difftk.plugins.noise_sampling",
    "difftk.plugins.samplers",
    "difftk.plugins.variance",
    "difftk.plugins.losses",
    "difftk.plugins.precision",
    "difftk.plugins.clipping",
    "difftk.plugins.ema",
    "difftk.plugins.optimizers",
    "difftk.plugins.lr_schedules",
    "difftk.plugins.architectures.mlp",
    "difftk.plugins.architectures.unet",
    "difftk.plugins.architectures.scorenet",
    "difftk.plugins.architectures.dit",
    "difftk.plugins.datasets.toy2d",
    "difftk.plugins.datasets.digits",
    "difftk.plugins.datasets.idx",
    "difftk.plugins.datasets.npz",
    "difftk.plugins.datasets.folder",
    "difftk.plugins.datasets.cifar10",
)


@dataclass(frozen=True)
class Provider:
    """Who supplied a component: a distribution (or difftk itself) and its version."""

    package: str
    version: str
    builtin: bool
    module: str


@dataclass(frozen=True)
class Entry:
    family: str
    name: str
    cls: type
    provider: Provider


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded, kept so list-plugins can show it."""

    package: str
    version: str
    error: str


@dataclass
class Registry:
    entries: dict[str, dict[str, Entry]] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    providers: list[Provider] = field(default_factory=list)

    def names(self, family: str) -> list[str]:
        return sorted(self.entries.get(family, {}))

    def get(self, family: str, name: str) -> Entry:
        """The entry for family/name, or an error with a did-you-mean and the choices."""
        members = self.entries.get(family, {})
        if name in members:
            return members[name]
        noun = BY_NAME[family].noun
        msg = f'no {noun} named "{name}"'
        close = difflib.get_close_matches(name, list(members), n=1)
        if close:
            msg += f'; did you mean "{close[0]}"?'
        else:
            for other, others in self.entries.items():
                if name in others and other != family:
                    msg += (f"; {name} is a {BY_NAME[other].noun}, "
                            f"set it in [{BY_NAME[other].section}]")
                    break
        msg += f" (available: {', '.join(sorted(members)) or 'none'}; "
        msg += f"see difftk list-plugins --family {family})"
        raise UnknownComponentError(msg)

    def create(self, section: str, params: dict):
        """Validate a recipe section {name=..., **params} into a component instance."""
        family = BY_SECTION[section].name
        entry = self.get(family, params["name"])
        return entry.cls.model_validate({k: v for k, v in params.items() if k != "name"})


def _selected_distributions() -> set[str] | None:
    raw = os.environ.get("DIFFTK_LOAD_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _builtin_provider(module: str) -> Provider:
    return Provider("difftk", __version__, True, module)


def _collect(pm: pluggy.PluginManager, plugin: object, provider: Provider,
             registry: Registry) -> None:
    """Call each family hook of one plugin with a register callback that stamps provenance."""
    found: list[Entry] = []
    for family in FAMILIES:
        caller = getattr(pm.hook, f"register_{family.name}")
        for impl in caller.get_hookimpls():
            if impl.plugin is not plugin:
                continue
            base = family.base_class()

            def register(cls, _family=family, _base=base):
                if not (isinstance(cls, type) and issubclass(cls, _base)):
                    raise PluginError(
                        f"{provider.package} registered {cls!r} as a {_family.noun}, but it "
                        f"is not a subclass of {_base.__module__}.{_base.__name__}")
                if not cls.name:
                    raise PluginError(f"{provider.package}: {cls.__name__} has no name")
                found.append(Entry(_family.name, cls.name, cls, provider))

            impl.function(register=register)
    for entry in found:
        members = registry.entries.setdefault(entry.family, {})
        if entry.name in members:
            first = members[entry.name].provider
            raise PluginError(
                f'two providers of the {BY_NAME[entry.family].noun} "{entry.name}": '
                f"{first.package} {first.version} ({first.module}) and "
                f"{entry.provider.package} {entry.provider.version} ({entry.provider.module})")
        members[entry.name] = entry
    registry.providers.append(provider)


def build_registry(extra_plugins: Iterable[tuple[object, Provider]] = (),
                   load_entry_points: bool = True) -> Registry:
    """Load built-ins, entry-point plugins and any extra (plugin, provider) pairs."""
    pm = pluggy.PluginManager("difftk")
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    plugins: list[tuple[object, Provider]] = []
    for module_name in BUILTIN_MODULES:
        module = import_module(module_name)
        pm.register(module, name=module_name)
        plugins.append((module, _builtin_provider(module_name)))

    if load_entry_points:
        selected = _selected_distributions()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else ep.name
            version = ep.dist.version if ep.dist is not None else "?"
            if selected is not None and dist not in selected and ep.name not in selected:
                continue
            try:
                module = ep.load()
                pm.register(module, name=f"{dist}:{ep.name}")
            except Exception as exc:  # a broken plugin must not break difftk
                registry.failures.append(PluginFailure(dist, version, _describe(exc)))
                continue
            try:
                pm.check_pending()  # a misspelt hook name is an error, not silence
            except pluggy.PluginValidationError as exc:
                pm.unregister(module)
                registry.failures.append(PluginFailure(dist, version, _describe(exc)))
                continue
            plugins.append((module, Provider(dist, version, False, ep.value)))

    for plugin, provider in extra_plugins:
        pm.register(plugin, name=f"{provider.package}:{provider.module}")
        pm.check_pending()
        plugins.append((plugin, provider))

    for plugin, provider in plugins:
        try:
            _collect(pm, plugin, provider, registry)
        except PluginError:
            raise
        except Exception as exc:
            if provider.builtin:
                raise
            registry.failures.append(PluginFailure(provider.package, provider.version,
                                                   _describe(exc)))
    for failure in registry.failures:
        print(f"difftk: warning: plugin {failure.package} {failure.version} could not be "
              f"loaded: {failure.error}", file=sys.stderr)
    return registry


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@functools.cache
def default_registry() -> Registry:
    """The process-wide registry, built on first use (not at import)."""
    return build_registry()
