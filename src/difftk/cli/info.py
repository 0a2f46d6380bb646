"""difftk info: what a recipe's network costs (parameters, FLOPs per image)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption
from difftk.errors import DifftkError


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise DifftkError(f'--shape "{text}": give positive sizes like 3,32,32 or 2')
    return shape


def info(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe whose [model] to measure.")],
    set_: SetOption = None,
    shape: Annotated[str | None, typer.Option(
        help="Data shape C,H,W (or D) instead of loading the recipe's data, e.g. 3,32,32.")] = None,
    classes: Annotated[int, typer.Option(
        help="Number of classes for a class-conditional network (with --shape).")] = 0,
):
    """Print the network's parameter count and forward FLOPs per image for a recipe."""
    from difftk.eval.network_input import network_spec
    from difftk.nn.cost import human, network_cost
    from difftk.recipe import load_recipe

    r = load_recipe(recipe, set_)
    spec = network_spec(r, None if shape is None else _parse_shape(shape), classes)
    model = r.parts["model"]
    cost = network_cost(model, spec)
    preset = getattr(model, "preset", "none")
    typer.echo(f"model: {model.name}" + (f" (preset {preset})" if preset != "none" else ""))
    typer.echo(f"data: shape {'x'.join(map(str, spec.shape))}, {spec.out_channels} output "
               f"channels, {spec.num_classes or 'no'} classes")
    typer.echo(f"parameters: {cost.parameters:,} ({human(cost.parameters)})")
    typer.echo(f"forward FLOPs per image: {cost.flops:,} ({human(cost.flops)}; "
               f"{human(cost.flops / 2)} multiply-adds)")
    typer.echo(f"training FLOPs per image (forward + backward, ~3x): {human(cost.training_flops)}")
