"""The base of every pluggable part: a pydantic model whose fields are its parameters.

A component is its own configuration (DESIGN.md, "A component is its own config"):
fields carry defaults, bounds and descriptions; unknown parameters are errors; methods
are the behaviour. ``name`` is the stable key a recipe uses; ``family`` is set once on
each family's base class.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Component(BaseModel):
    """A named, validated, pluggable part of a diffusion run."""

    # NaN passes every bound (each comparison with it is false) and inf breaks the math:
    # a field that means "no limit" by inf says allow_inf_nan=True itself.
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True,
                              allow_inf_nan=False)

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    # Packages outside the core install that this component imports (optional_package.py);
    # where one is missing the component is listed as needing it and cannot be chosen.
    requires: ClassVar[tuple[Any, ...]] = ()

    @classmethod
    def summary(cls) -> str:
        """The docstring's first paragraph: what the component is and where it comes from."""
        doc = (inspect.getdoc(cls) or "").strip()
        return " ".join(doc.split("\n\n")[0].split())

    @classmethod
    def parameters(cls) -> list[dict[str, Any]]:
        """Every parameter with its type, default and description (for list-plugins)."""
        out = []
        for field_name, field in cls.model_fields.items():
            default = None if field.is_required() else field.get_default(call_default_factory=True)
            annotation = field.annotation
            type_name = getattr(annotation, "__name__", None) or str(annotation).replace(
                "typing.", "")
            out.append({
                "name": field_name,
                "type": type_name,
                "default": default,
                "required": field.is_required(),
                "description": field.description or "",
            })
        return out

    def params(self) -> dict[str, Any]:
        """The parameters as plain TOML-able values, every default filled in."""
        return self.model_dump(mode="json")

    def check(self, parts: dict[str, Component]) -> list[tuple[str, str]]:
        """Problems with this part given the other parts of the recipe (section -> part).

        Returns (field path relative to this section, sentence) pairs; empty when fine.
        Components override this to refuse combinations that cannot work.
        """
        return []
