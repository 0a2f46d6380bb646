"""Hypothesis strategies for hostile recipes, shared by the fuzz test and its benchmark.

A case starts from a shipped recipe and applies a few mutations: a field of any section
or component (known or not) set to a nasty value (huge or negative integers, NaN, inf,
NUL, path tricks, deep nesting, wrong types), a section replaced or deleted, a component
renamed, or a --set item typed as a user would. The invariant: the recipe validates (and
round-trips through its resolved TOML), or validation raises RecipeError whose problems
are one line each; never another exception.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from hypothesis import strategies as st

from difftk.families import FAMILIES
from difftk.recipe import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
BASE_RECIPES = ["recipes/toy2d.toml", "recipes/edm.toml", "recipes/ddpm.toml",
                "recipes/architectures/dit.toml", "recipes/architectures/unet.toml"]
BASES = {name: tomllib.loads((ROOT / name).read_text()) for name in BASE_RECIPES}

SECTIONS = [*SETTINGS, *(f.section for f in FAMILIES)]


def _field_names() -> list[str]:
    from difftk.registry import default_registry

    registry = default_registry()
    names = {f for cls in SETTINGS.values() for f in cls.model_fields}
    for family in FAMILIES:
        for member in registry.names(family.name):
            names |= set(registry.get(family.name, member).cls.model_fields)
    return sorted(names)


def _component_names() -> list[str]:
    from difftk.registry import default_registry

    registry = default_registry()
    return sorted({n for f in FAMILIES for n in registry.names(f.name)})


FIELDS = _field_names()
COMPONENTS = _component_names()

nasty_ints = st.one_of(
    st.integers(-10, 10), st.integers(-2**80, 2**80),
    st.sampled_from([0, -1, -2, 2**31, 2**32, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64,
                     2**64 - 1, 10**30, 50_000_000, -2**63]))
nasty_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-320, 1e308, -1e308, 0.5, 1.0, 0.999999, 2.0, 3.0]))
nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "..", ".", "/abs/path", "../up", "a/b", "a\\b", "a\x00b", "x" * 300,
                     "é" * 130, "data", "auto", "cpu", "cuda", "cuda:7", "meta", "mps",
                     "vulkan", "cuda:-1", "nan", "inf", "karras", "linspace", "none"]))
scalars = st.one_of(st.booleans(), nasty_ints, nasty_floats, nasty_text)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)),
    max_leaves=8)
deep = st.integers(20, 120).map(lambda n: _nest(n))  # hypothesis cannot print deeper


def _nest(n: int):
    value: object = 1
    for _ in range(n):
        value = [value]
    return value


@st.composite
def mutation(draw, data: dict) -> None:
    """Apply one random mutation to a recipe dict, in place."""
    kind = draw(st.sampled_from(["field", "field", "field", "name", "section", "drop",
                                 "deep"]))
    section = draw(st.one_of(st.sampled_from(SECTIONS + ["bogus"]), st.text(max_size=8)))
    table = data.get(section)
    if kind == "field" or kind == "deep":
        if not isinstance(table, dict):
            table = data[section] = {}
        key = draw(st.one_of(st.sampled_from(FIELDS + ["bogus_field"]), st.text(max_size=8)))
        table[key] = draw(deep if kind == "deep" else values)
    elif kind == "name":
        if not isinstance(table, dict):
            table = data[section] = {}
        table["name"] = draw(st.one_of(st.sampled_from(COMPONENTS), nasty_text))
    elif kind == "section":
        data[section] = draw(scalars)
    else:
        data.pop(section, None)


@st.composite
def hostile_recipes(draw) -> dict:
    data = copy.deepcopy(BASES[draw(st.sampled_from(BASE_RECIPES))])
    for _ in range(draw(st.integers(1, 4))):
        draw(mutation(data))
    return data


set_keys = st.one_of(
    st.builds(lambda s, f: f"{s}.{f}", st.sampled_from(SECTIONS), st.sampled_from(FIELDS)),
    st.builds(lambda s, f, g: f"{s}.{f}.{g}", st.sampled_from(SECTIONS),
              st.sampled_from(FIELDS), st.sampled_from(FIELDS)),
    st.text(max_size=20))
set_values = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "1e400", "[2, 3]", '"../x"', '"a\\u0000b"',
                     "99999999999999999999999", "-2", "true", "[", '"', "{a = 1}", "1\n2",
                     "[" * 2000, '"meta"', "0", "1e-400"]),
    st.text(max_size=30),
    nasty_ints.map(str), nasty_floats.map(repr))
set_items = st.builds(lambda k, v: f"{k}={v}", set_keys, set_values)
