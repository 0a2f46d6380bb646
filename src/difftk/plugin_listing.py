"""What is installed, per family, as plain rows: the data `difftk list-plugins` prints as
tables or JSON (name, provider, summary, parameters with defaults, and for a component whose
optional package is missing the command that installs it)."""

from __future__ import annotations

from difftk.errors import UnknownComponentError
from difftk.families import BY_NAME, FAMILIES


def _row(entry, missing=None) -> dict:
    return {
        "name": entry.name,
        "provider": entry.provider.package,
        "version": entry.provider.version,
        "builtin": entry.provider.builtin,
        # A component whose optional package is missing is listed, with what installs it.
        "available": missing is None,
        "status": "ok" if missing is None else missing.status(),
        "summary": entry.cls.summary(),
        "parameters": entry.cls.parameters(),
    }


def plugin_rows(registry, family: str | None = None) -> tuple[dict[str, list[dict]], list[dict]]:
    """({family: rows sorted by name}, [plugins that failed to load]) of ``registry``; only
    ``family`` when given (an unknown family is refused in one sentence, with the nearest)."""
    if family is not None and family not in BY_NAME:
        import difflib

        close = difflib.get_close_matches(family, list(BY_NAME), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        raise UnknownComponentError(f'no family named "{family}"{hint} (families: '
                                    f"{', '.join(BY_NAME)})")
    rows = {}
    for fam in FAMILIES:
        if family and fam.name != family:
            continue
        found = [_row(registry.get(fam.name, n)) for n in registry.names(fam.name)]
        found += [_row(u.entry, u.package)
                  for u in registry.unavailable.get(fam.name, {}).values()]
        rows[fam.name] = sorted(found, key=lambda r: r["name"])
    failures = [{"package": f.package, "version": f.version, "error": f.error}
                for f in registry.failures]
    return rows, failures
