"""``--set section.field=value``: parsing the value and applying it before validation;
setting a section's ``name`` drops the parameters that belonged to the old component."""

from __future__ import annotations

import tomllib
from typing import Any

from difftk.errors import DifftkError, quoted
from difftk.families import BY_SECTION
from difftk.recipe.messages import _kind


def parse_value(raw: str) -> Any:
    """A --set value as TOML (numbers, booleans, lists, quoted strings); else a bare string."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, RecursionError):
        return raw


def _split_override(item: str) -> tuple[list[str], Any] | str:
    """ "section.key=value" as (path, value), or the sentence saying what is wrong with it."""
    if any(ord(c) < 32 and c != "\t" for c in item):
        # A newline would let the value add TOML keys of its own (v = 1 \n other = 2).
        return (f"--set {item!r} holds a newline or control character; a value is one line "
                f'(write "\\n" inside a quoted string)')
    key, sep, raw = item.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or len(path) < 2 or not all(path):
        return f"--set {quoted(item)} is not of the form section.field=value"
    return path, parse_value(raw.strip())


def _carried(section: str, new_name, old: dict) -> set[str]:
    """Settings a sampler switch keeps: those the new sampler declares too (steps, grid,
    guidance, clip_denoised, ...), so ``--sampler ddim`` on a recipe that clips keeps
    clipping. Other sections start afresh: a field of one architecture or schedule shares
    a name, not a meaning, with another's."""
    if section != "sampler" or not isinstance(new_name, str):
        return set()
    from difftk.registry import default_registry

    try:
        fields = default_registry().get(BY_SECTION[section].name, new_name).cls.model_fields
    except DifftkError:
        return set()
    return {k for k in old if k != "name" and k in fields}


def apply_overrides(data: dict[str, Any], overrides: list[str],
                    dropped: list[str] | None = None) -> list[tuple[str, str]]:
    """Apply "section.key=value" overrides in place; return problems as (path, sentence)."""
    problems: list[tuple[str, str]] = []
    parsed = []
    for item in overrides:
        split = _split_override(item)
        if isinstance(split, str):
            problems.append(("", split))
        else:
            parsed.append(split)
    # Name changes first: they reset the section, later keys then fill it.
    for path, value in sorted(parsed, key=lambda p: p[0][1:] != ["name"]):
        section = path[0]
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            problems.append((section, "is not a section"))
            continue
        if path[1:] == ["name"] and section in BY_SECTION and target.get("name") != value:
            shared = _carried(section, value, target)
            old = [k for k in target if k != "name" and k not in shared]
            if old and dropped is not None:
                dropped.append(f"{section}: {', '.join(old)} (parameters of "
                               f"{target.get('name')})")
            kept = {k: target[k] for k in shared}
            target.clear()
            target.update(kept)
        for depth, key in enumerate(path[1:-1], start=1):
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                where = ".".join(path[:depth + 1])
                problems.append((where, f"is {_kind(target)}, not a table, so --set "
                                        f"{'.'.join(path)} cannot set a field inside it"))
                break
        else:
            target[path[-1]] = value
    return problems
