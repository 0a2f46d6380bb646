"""difftk list-plugins: what is installed, per family."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from difftk.errors import UnknownComponentError


def list_plugins(
    family: Annotated[str | None, typer.Option(
        help="Only this family, e.g. weights, schedules, samplers.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
):
    """List every component per family: name, provider, summary, parameters with defaults.

    A component whose optional package is not installed is listed with the command that
    installs it (e.g. needs `pip install "difftk[interop]"`).
    """
    from difftk.families import BY_NAME, FAMILIES
    from difftk.registry import default_registry

    if family is not None and family not in BY_NAME:
        import difflib

        close = difflib.get_close_matches(family, list(BY_NAME), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ""
        raise UnknownComponentError(f'no family named "{family}"{hint} (families: '
                                    f"{', '.join(BY_NAME)})")
    registry = default_registry()

    def row(e, missing=None):
        return {
            "name": e.name,
            "provider": e.provider.package,
            "version": e.provider.version,
            "builtin": e.provider.builtin,
            # A component whose optional package is missing is listed, with what installs it.
            "available": missing is None,
            "status": "ok" if missing is None else missing.status(),
            "summary": e.cls.summary(),
            "parameters": e.cls.parameters(),
        }

    rows = {}
    for fam in FAMILIES:
        if family and fam.name != family:
            continue
        found = [row(registry.get(fam.name, n)) for n in registry.names(fam.name)]
        found += [row(u.entry, u.package) for u in registry.unavailable.get(fam.name, {}).values()]
        rows[fam.name] = sorted(found, key=lambda r: r["name"])
    failures = [{"package": f.package, "version": f.version, "error": f.error}
                for f in registry.failures]
    if as_json:
        typer.echo(json.dumps({"families": rows, "failed_plugins": failures}, indent=1,
                              default=str))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text objects, not strings: rich would read "[weight]" or "[0, 1]" as markup and drop it.
    console = Console()
    for fam_name, items in rows.items():
        fam = BY_NAME[fam_name]
        table = Table(title=Text(f"{fam_name}  [{fam.section}]"), title_justify="left",
                      expand=False)
        table.add_column("name", style="bold")
        table.add_column("provider")
        table.add_column("summary", overflow="fold")
        table.add_column("parameters (default)", overflow="fold")
        for item in items:
            provider = "builtin" if item["builtin"] else f"{item['provider']} {item['version']}"
            if not item["available"]:
                provider += f", {item['status']}"
            params = ", ".join(f"{p['name']}={p['default']!r}" if not p["required"]
                               else f"{p['name']} (required)" for p in item["parameters"])
            table.add_row(Text(item["name"]), Text(provider), Text(item["summary"]), Text(params))
        console.print(table)
    for f in failures:
        console.print(Text.assemble(("failed to load", "red"),
                                    f" {f['package']} {f['version']}: {f['error']}"))
