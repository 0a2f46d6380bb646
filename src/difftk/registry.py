"""The plugin manager: built-ins, entry-point plugins and plugin files, registered the same way.

Entry points (group ``difftk``) are loaded with our own loop so that one plugin that
fails to import is reported and the rest keep working (pluggy's own loader stops at
the first failure). ``DIFFTK_LOAD_PLUGINS`` is a comma list of distribution names to
load; empty loads none. Built-ins are always loaded. ``DIFFTK_PLUGINS_DIR`` (or
``difftk --plugins-dir``) names a folder whose ``*.py`` files are each loaded as a plugin
module, as datasette's ``--plugins-dir`` does; their provider is the file.

A plugin is isolated: one that fails to import, exits, registers a class of the wrong
family or a name another provider has is reported and left out whole, and the rest keep
working. Calls into a plugin's components go through a boundary that names the plugin
when its code raises or returns what its family's contract forbids (see plugin_guard.py).
A component whose optional package is missing (its class's ``requires``) is kept in
``Registry.unavailable``: listed with the install command, refused by ``get`` with it.
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import import_module, metadata
from pathlib import Path

import pluggy

from difftk import __version__, hookspecs
from difftk.errors import PluginError, UnknownComponentError, quoted, with_article
from difftk.families import BY_NAME, FAMILIES
from difftk.optional_package import OptionalPackage
from difftk.plugin_guard import describe, guard_plugin_class, plugin_import_boundary

ENTRY_POINT_GROUP = "difftk"
PLUGINS_DIR_VARIABLE = "DIFFTK_PLUGINS_DIR"
# Version shown for a plugin loaded from a file of a plugins folder (it has no distribution).
FILE_VERSION = "(file)"

BUILTIN_MODULES = (
    "difftk.plugins.schedules",
    "difftk.plugins.targets",
    "difftk.plugins.weights",
    "difftk.plugins.noise_sampling",
    "difftk.plugins.samplers",
    "difftk.plugins.flow_samplers",
    "difftk.plugins.adaptive_sampler",
    "difftk.plugins.variance",
    "difftk.plugins.losses",
    "difftk.plugins.precision",
    "difftk.plugins.clipping",
    "difftk.plugins.ema",
    "difftk.plugins.optimizers",
    "difftk.plugins.lr_schedules",
    "difftk.plugins.augmentations",
    "difftk.plugins.loggers",
    "difftk.plugins.latents",
    "difftk.plugins.architectures.mlp",
    "difftk.plugins.architectures.unet",
    "difftk.plugins.architectures.scorenet",
    "difftk.plugins.architectures.dit",
    "difftk.plugins.architectures.edm2_unet",
    "difftk.plugins.architectures.diffusers_unet2d",
    "difftk.plugins.datasets.toy2d",
    "difftk.plugins.datasets.digits",
    "difftk.plugins.datasets.idx",
    "difftk.plugins.datasets.npz",
    "difftk.plugins.datasets.folder",
    "difftk.plugins.datasets.packed",
    "difftk.plugins.datasets.cifar10",
    "difftk.plugins.datasets.hf_datasets",
)


# A component's name: what recipes write and list-plugins sorts (one word).
COMPONENT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


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
class Unavailable:
    """A registered component whose optional package is not installed (optional_package.py)."""

    entry: Entry
    package: OptionalPackage  # the first of its ``requires`` that is missing


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
    # family -> name -> a component registered without its optional package
    unavailable: dict[str, dict[str, Unavailable]] = field(default_factory=dict)

    def names(self, family: str) -> list[str]:
        return sorted(self.entries.get(family, {}))

    def get(self, family: str, name: str) -> Entry:
        """The entry for family/name, or an error with a did-you-mean and the choices (or,
        for a component whose package is missing, the command that installs it)."""
        members = self.entries.get(family, {})
        if name in members:
            return members[name]
        noun = BY_NAME[family].noun
        missing = self.unavailable.get(family, {}).get(name)
        if missing is not None:
            raise UnknownComponentError(missing.package.sentence(f"the {noun} {quoted(name)}"))
        msg = f"no {noun} named {quoted(name)}"
        close = difflib.get_close_matches(name, list(members), n=1)
        if close:
            msg += f'; did you mean "{close[0]}"?'
        else:
            for other, others in self.entries.items():
                if name in others and other != family:
                    msg += (f"; {name} is {with_article(BY_NAME[other].noun)}, "
                            f"set it in [{BY_NAME[other].section}]")
                    break
        msg += f" (available: {', '.join(sorted(members)) or 'none'}; "
        msg += f"see difftk list-plugins --family {family})"
        raise UnknownComponentError(msg)


def _selected_distributions() -> set[str] | None:
    raw = os.environ.get("DIFFTK_LOAD_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _builtin_provider(module: str) -> Provider:
    return Provider("difftk", __version__, True, module)


def _collect(pm: pluggy.PluginManager, plugin: object, provider: Provider,
             registry: Registry) -> None:
    """Call each family hook of one plugin with a register callback that stamps provenance.

    Every entry is checked before any is added, so a plugin that breaks the contract
    (wrong base class, a name already taken) leaves the registry as it was.
    """
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
                        f"{provider.package} registered {cls!r} as "
                        f"{with_article(_family.noun)}, but it is not a subclass of "
                        f"{_base.__module__}.{_base.__name__}")
                if not cls.name:
                    raise PluginError(f"{provider.package}: {cls.__name__} has no name")
                if not isinstance(cls.name, str) or not COMPONENT_NAME.fullmatch(cls.name):
                    raise PluginError(
                        f"{provider.package}: {cls.__name__} has the name {cls.name!r}; a "
                        "component's name is one word of letters, digits, _ and - that "
                        "starts with a letter")
                found.append(Entry(_family.name, cls.name, cls, provider))

            impl.function(register=register)
    seen: dict[tuple[str, str], Entry] = {}
    for entry in found:
        held = registry.unavailable.get(entry.family, {}).get(entry.name)
        first = registry.entries.get(entry.family, {}).get(entry.name) or seen.get(
            (entry.family, entry.name)) or (held.entry if held else None)
        if first is not None:
            raise PluginError(
                f'two providers of the {BY_NAME[entry.family].noun} "{entry.name}": '
                f"{first.provider.package} {first.provider.version} ({first.provider.module}) "
                f"and {entry.provider.package} {entry.provider.version} "
                f"({entry.provider.module})")
        seen[(entry.family, entry.name)] = entry
    for entry in found:
        missing = next((p for p in getattr(entry.cls, "requires", ()) if not p.installed()),
                       None)
        if missing is not None:  # listed with its install command, never chosen
            registry.unavailable.setdefault(entry.family, {})[entry.name] = Unavailable(
                entry, missing)
            continue
        if not provider.builtin:
            guard_plugin_class(entry.cls, entry.family, provider)
        registry.entries.setdefault(entry.family, {})[entry.name] = entry
    registry.providers.append(provider)


def _load_failure(exc: BaseException, module: str) -> str:
    """Why a plugin module could not be imported, as the end of a sentence."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        top = exc.name.split(".")[0]
        if top != module.split(".")[0]:
            return (f'it needs the package "{top}", which is not installed '
                    f"(pip install {top}, or the plugin's extra)")
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while being imported"
    return describe(exc)


def plugin_files(folder: str | os.PathLike) -> list[Path]:
    """The *.py files of a plugins folder, sorted (files starting with _ or . are skipped)."""
    return sorted(p for p in Path(folder).expanduser().glob("*.py")
                  if p.is_file() and not p.name.startswith(("_", ".")))


def _import_file(path: Path):
    """A plugin file as a module named after it (difftk_plugins_dir.<stem>)."""
    name = f"difftk_plugins_dir.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _plugin_modules(registry: Registry, entry_points: bool, plugins_dir: str | None
                    ) -> Iterator[tuple[Callable[[], object], Provider, str]]:
    """(loader, provider, module name) of every entry-point plugin and plugin file."""
    selected = _selected_distributions()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if entry_points else ():
        dist = ep.dist.name if ep.dist is not None else ep.name
        version = ep.dist.version if ep.dist is not None else "?"
        if selected is not None and dist not in selected and ep.name not in selected:
            continue
        yield ep.load, Provider(dist, version, False, ep.value), ep.module
    if plugins_dir:
        folder = Path(plugins_dir).expanduser()
        if not folder.is_dir():
            registry.failures.append(PluginFailure(
                str(folder), FILE_VERSION, f"the plugins folder ({PLUGINS_DIR_VARIABLE} or "
                "--plugins-dir) is not a directory"))
            return
        for path in plugin_files(folder):
            yield (functools.partial(_import_file, path),
                   Provider(str(path), FILE_VERSION, False, path.stem), path.stem)


def build_registry(extra_plugins: Iterable[tuple[object, Provider]] = (),
                   load_entry_points: bool = True, plugins_dir: str | None = None) -> Registry:
    """Load built-ins, entry-point plugins, the files of a plugins folder (default:
    $DIFFTK_PLUGINS_DIR) and any extra (plugin, provider) pairs."""
    pm = pluggy.PluginManager("difftk")
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    plugins: list[tuple[object, Provider]] = []
    for module_name in BUILTIN_MODULES:
        module = import_module(module_name)
        pm.register(module, name=module_name)
        plugins.append((module, _builtin_provider(module_name)))

    if plugins_dir is None:
        plugins_dir = os.environ.get(PLUGINS_DIR_VARIABLE) or None
    if load_entry_points or plugins_dir:
        for load, provider, module_name in _plugin_modules(registry, load_entry_points,
                                                           plugins_dir):
            try:
                with plugin_import_boundary(f"plugin {provider.package}"):
                    module = load()
                pm.register(module, name=f"{provider.package}:{provider.module}")
            except (Exception, SystemExit) as exc:  # a broken plugin must not break difftk
                registry.failures.append(PluginFailure(provider.package, provider.version,
                                                       _load_failure(exc, module_name)))
                continue
            try:
                pm.check_pending()  # a misspelt hook name is an error, not silence
            except pluggy.PluginValidationError as exc:
                pm.unregister(module)
                registry.failures.append(PluginFailure(provider.package, provider.version,
                                                       describe(exc)))
                continue
            plugins.append((module, provider))

    for plugin, provider in extra_plugins:
        pm.register(plugin, name=f"{provider.package}:{provider.module}")
        pm.check_pending()
        plugins.append((plugin, provider))

    for plugin, provider in plugins:
        try:
            if provider.builtin:
                _collect(pm, plugin, provider, registry)
            else:
                with plugin_import_boundary(f"plugin {provider.package}"):
                    _collect(pm, plugin, provider, registry)
        except (Exception, SystemExit) as exc:
            if provider.builtin:
                raise
            pm.unregister(plugin)
            reason = str(exc) if isinstance(exc, PluginError) else describe(exc)
            registry.failures.append(PluginFailure(provider.package, provider.version, reason))
    for failure in registry.failures:
        print(f"difftk: warning: plugin {failure.package} {failure.version} could not be "
              f"loaded: {failure.error}", file=sys.stderr)
    return registry


@functools.cache
def default_registry() -> Registry:
    """The process-wide registry, built on first use (not at import)."""
    return build_registry()

