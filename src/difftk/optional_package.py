"""A package a component needs that difftk's core install leaves out (diffusers, wandb, ...).

A component declares it on its class (``requires = (OptionalPackage("wandb", ...),)``) and
is registered whether or not the package is installed; the registry keeps a component whose
package is missing apart, so ``difftk list-plugins`` shows it with the install command and a
recipe that names it gets that command in one sentence, instead of "no logger named wandb".
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class OptionalPackage:
    module: str  # the name it is imported by ("diffusers", "datasets")
    install: str  # the command that installs it ('pip install "difftk[interop]"')

    def installed(self) -> bool:
        """Whether the module can be imported, without importing it (that can take seconds)."""
        try:
            return importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):  # a parent package missing, or a broken __spec__
            return False

    def status(self) -> str:
        """What list-plugins shows for a component whose package is missing."""
        return f"needs `{self.install}`"

    def sentence(self, what: str) -> str:
        """Why ``what`` ('the logger "wandb"') cannot be used, as one sentence."""
        return (f'{what} needs the package "{self.module}", which is not installed '
                f"({self.install})")
