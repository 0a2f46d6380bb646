"""Checks every component passes, whatever its family: it is its own, well-documented config."""

from __future__ import annotations

import re
import tomllib

import tomli_w
from pydantic import ValidationError

from difftk.families import BY_NAME

NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def check_name_and_summary(component) -> None:
    """A recipe key in snake_case, a family base class, and a one-line summary for list-plugins."""
    cls = type(component)
    assert NAME.match(cls.name or ""), f"name {cls.name!r} is not a snake_case recipe key"
    family = BY_NAME.get(cls.family)
    assert family is not None, f"family {cls.family!r} is not one of {list(BY_NAME)}"
    assert isinstance(component, family.base_class()), \
        f"{cls.__name__} does not subclass {family.base}"
    # inspect.getdoc would fall back to the base class's docstring; the part needs its own.
    assert (cls.__dict__.get("__doc__") or "").strip() and cls.summary(), \
        f"{cls.__name__} has no docstring of its own (list-plugins shows its first line)"


def check_parameters_documented(component) -> None:
    """Every parameter has a description, which list-plugins and validate print."""
    missing = [n for n, f in type(component).model_fields.items() if not f.description]
    assert not missing, f"parameters without a description: {', '.join(missing)}"


def check_params_round_trip(component) -> None:
    """params() -> TOML -> validation gives the same component (runs write and re-read recipes).

    TOML has no null, so recipes leave None-valued parameters out; their default must be None.
    """
    params = component.params()
    text = tomli_w.dumps({"part": {k: v for k, v in params.items() if v is not None}})
    again = type(component).model_validate(tomllib.loads(text)["part"])
    assert again.params() == params, f"{params} came back as {again.params()}"


def check_unknown_parameter_refused(component) -> None:
    """A misspelt parameter is an error, not silently ignored."""
    try:
        type(component).model_validate({**component.params(), "no_such_parameter": 1})
    except ValidationError:
        return
    raise AssertionError("an unknown parameter was accepted (keep extra='forbid')")


COMMON_CHECKS = [check_name_and_summary, check_parameters_documented, check_params_round_trip,
                 check_unknown_parameter_refused]
