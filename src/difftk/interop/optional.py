"""diffusers on demand: imported only by the commands that need it (it takes seconds), as the
one ``OptionalPackage`` every part that needs it declares."""

from __future__ import annotations

from difftk.interop.errors import InteropError
from difftk.optional_package import OptionalPackage

DIFFUSERS = OptionalPackage("diffusers", 'pip install "difftk[interop]"')


def import_diffusers():
    """The diffusers module, or one sentence saying how to install it."""
    if not DIFFUSERS.installed():
        raise InteropError(DIFFUSERS.sentence("this"))
    import diffusers

    return diffusers
