"""difftk list-plugins: what is installed, per family."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def list_plugins(
    family: Annotated[str | None, typer.Option(
        help="Only this family, e.g. weights, schedules, samplers.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
):
    """List every component per family: name, provider, summary, parameters with defaults.

    A component whose optional package is not installed is listed with the command that
    installs it (e.g. needs `pip install "difftk[interop]"`).
    """
    from difftk.families import BY_NAME
    from difftk.plugin_listing import plugin_rows
    from difftk.registry import default_registry

    rows, failures = plugin_rows(default_registry(), family)
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
