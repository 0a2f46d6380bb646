"""difftk plot schedules: logSNR against t / T for each schedule (seed 001 Figure 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import fail
from difftk.cli.plot import plot_app
from difftk.errors import DifftkError


def component_from_spec(section: str, spec: str):
    """A component of a recipe section from "name" or "name:key=value:key=value"."""
    from pydantic import ValidationError

    from difftk.errors import RecipeError
    from difftk.families import BY_SECTION
    from difftk.recipe import parse_value
    from difftk.registry import default_registry

    name, *settings = spec.split(":")
    params: dict = {"name": name}
    for item in settings:
        key, sep, raw = item.partition("=")
        if not sep:
            raise RecipeError([("", f'"{item}" is not of the form key=value')], spec)
        params[key.strip()] = parse_value(raw.strip())
    registry = default_registry()
    registry.get(BY_SECTION[section].name, name)  # unknown names: did-you-mean
    try:
        return registry.create(section, params)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise RecipeError([(where, err["msg"])], spec) from None


@plot_app.command("schedules")
def plot_schedules(
    names: Annotated[list[str] | None, typer.Argument(
        help='Schedules, e.g. cosine "linear:T=4000" (default: every installed one).')] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "schedules.png"),
    csv_path: Annotated[Path | None, typer.Option(
        "--csv", help="Also write the numbers: schedule, variant, t, t/T, alpha, sigma, "
                      "alpha_bar, logSNR.")] = None,
    zero_terminal: Annotated[bool, typer.Option(
        help="Also draw each t-space schedule with zero terminal SNR (dashed).")] = True,
):
    """Draw logSNR and alpha against t / T for each schedule, with and without zero terminal SNR."""
    try:
        from difftk.analysis.schedule_figures import draw_schedules, schedule_curves, write_csv
        from difftk.eval.figures import save_png
        from difftk.registry import default_registry

        specs = names or default_registry().names("schedules")
        curves = []
        for spec in specs:
            curves += schedule_curves(spec, component_from_spec("schedule", spec), zero_terminal)
        save_png(draw_schedules(curves), output)
        if csv_path is not None:
            write_csv(curves, csv_path)
    except DifftkError as exc:
        raise fail(exc) from None
    typer.echo(f"{len(specs)} schedules -> {output}" + (f", {csv_path}" if csv_path else ""))
