"""One sentence per pydantic error, with the recipe path of the field."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from difftk.errors import quoted


def _kind(value: Any) -> str:
    """ "a string", "an integer", ... for sentences about a TOML value."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list"}
    return next((n for t, n in names.items() if isinstance(value, t)), "a value")


def _pydantic_message(err: dict, cls: type) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        field = str(err["loc"][-1])
        accepted = list(cls.model_fields)
        close = difflib.get_close_matches(field, accepted, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        owner = getattr(cls, "name", "") or cls.__name__
        return (f"{owner} has no parameter {quoted(field)}{hint} "
                f"(accepts: {', '.join(accepted) or 'none'})")
    if kind == "missing":
        return "is required"
    msg = msg.removeprefix("Value error, ")
    if "overflow" in msg.lower() or "too big" in msg.lower():
        # pydantic's and torch's "Overflow when unpacking long long" and the like.
        msg = "holds a number too large to compute with"
    text = msg[0].lower() + msg[1:] if msg else kind
    text = text.replace("input should be", "must be")
    if "input" in err and not isinstance(err["input"], dict):
        text += f" (got {_short_repr(err['input'])})"
    field = cls.model_fields.get(str(err["loc"][0])) if err["loc"] else None
    if kind in BOUND_ERRORS and field is not None and field.description:
        text += f" ({err['loc'][0]}: {field.description})"  # the bound's reason
    return text


# pydantic error types of a number or a length outside its Field bounds.
BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal",
                "too_long", "too_short", "finite_number"}


def _printable(key: str) -> str:
    """A key as typed, or its repr when it holds a newline or other control character."""
    return key if key.isprintable() else repr(key)


def _short_repr(value: Any, limit: int = 80) -> str:
    """repr of a value for a message, cut so one bad value cannot fill the screen."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + " ...)"


def _errors(exc: ValidationError, prefix: str, cls: type) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = [_printable(str(p)) for p in err["loc"] if not str(p).startswith("function-")]
        path = ".".join([prefix, *loc]) if loc else prefix
        out.append((path, _pydantic_message(err, cls)))
    return out
