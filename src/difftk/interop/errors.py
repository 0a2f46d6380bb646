"""The error of a model that cannot cross into or out of another library's format."""

from __future__ import annotations

from difftk.errors import DifftkError


class InteropError(DifftkError):
    """A layout, schedule or target another library cannot express, or a folder it did not write."""
