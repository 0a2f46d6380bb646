"""``difftk new-plugin``: write a separate pip package that adds a component to a family.

The package has a pyproject.toml with the ``difftk`` entry point, a module with the hook
implementation and one working component, a README, and a test that runs difftk's own
contract checks (difftk.testing) and the component's formula. It installs, is listed by
``difftk list-plugins``, and passes its test as generated; plugins/difftk-soft-min-snr is
the hand-written model it follows.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path

from difftk import __version__
from difftk.errors import DifftkError
from difftk.families import BY_NAME
from difftk.scaffold.components import COMPONENTS
from difftk.scaffold.templates import TEMPLATES


@dataclass(frozen=True)
class PluginNames:
    """The spellings of one plugin name: distribution, import package, component key, class."""

    distribution: str  # difftk-my-weight
    package: str  # difftk_my_weight
    component: str  # my_weight
    class_name: str  # MyWeight

    @classmethod
    def from_name(cls, name: str) -> PluginNames:
        raw = name.strip().lower().replace("_", "-")
        raw = raw[len("difftk-"):] if raw.startswith("difftk-") else raw
        if not re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", raw):
            raise DifftkError(f'"{name}" is not a plugin name: use letters, digits and dashes, '
                              "starting with a letter (e.g. my-weight)")
        component = raw.replace("-", "_")
        if keyword.iskeyword(component):
            raise DifftkError(f'"{name}" is a Python keyword; choose another name')
        return cls(distribution=f"difftk-{raw}", package=f"difftk_{component}",
                   component=component,
                   class_name="".join(p.capitalize() for p in raw.split("-")))


def families_with_templates() -> list[str]:
    return sorted(TEMPLATES)


def scaffold_plugin(name: str, family: str, dest: Path) -> Path:
    """Write the package for ``name`` under ``dest`` and return its directory."""
    if family not in TEMPLATES:
        raise DifftkError(f'no plugin template for the family "{family}" (templates: '
                          f"{', '.join(families_with_templates())})")
    names = PluginNames.from_name(name)
    root = Path(dest) / names.distribution
    if root.exists():
        raise DifftkError(f"{root} already exists; choose another name or directory")
    what = COMPONENTS[family][0] if family in COMPONENTS else "a loss weighting"
    values = {"distribution": names.distribution, "package": names.package,
              "component": names.component, "class_name": names.class_name,
              "family": family, "section": BY_NAME[family].section,
              "names_field": BY_NAME[family].names_field,
              "what_cap": what[0].upper() + what[1:], "difftk_version": __version__}
    for relative, text in TEMPLATES[family].items():
        path = root / relative.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(**values))
    return root
