"""diffusers on demand: imported only by the commands that need it (it takes seconds)."""

from __future__ import annotations

import importlib.util

from difftk.interop.errors import InteropError

INSTALL_HINT = 'pip install "difftk[interop]"'


def diffusers_installed() -> bool:
    """Whether diffusers can be imported, without importing it."""
    return importlib.util.find_spec("diffusers") is not None


def import_diffusers():
    """The diffusers module, or one sentence saying how to install it."""
    if not diffusers_installed():
        raise InteropError(f"this needs the diffusers package, which is not installed "
                           f"({INSTALL_HINT})")
    import diffusers

    return diffusers
