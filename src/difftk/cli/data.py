"""difftk data: inspect a recipe's data set (sizes, range, sigma_data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import DifftkTyper, SetOption, app

data_app = DifftkTyper(no_args_is_help=True, help="Inspect the data set a recipe trains on.")
app.add_typer(data_app, name="data", rich_help_panel="Inspection")


@data_app.command()
def stats(
    recipe: Annotated[Path, typer.Argument(help="TOML recipe whose [data] section is loaded.")],
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
):
    """Load the recipe's data set and print its sizes, range, mean and std (sigma_data).

    A recipe with [latents] also gets the statistics of its encoded data set, the one it
    trains on and measures sigma_data on."""
    import torch

    from difftk.recipe import load_recipe
    from difftk.train.training_data import training_data

    r = load_recipe(recipe, set_)
    part = r.parts["data"]
    bundle = part.load()
    s = bundle.stats
    trained_on = training_data(r, torch.device("cpu"), bundle)
    latents = None if trained_on.codec.identity else trained_on.data
    report = {
        "data": part.name, "kind": bundle.kind, "shape": list(bundle.shape),
        "train": int(bundle.train.shape[0]), "heldout": int(bundle.heldout.shape[0]),
        "classes": bundle.num_classes, "class_names": bundle.class_names,
        "min": s.minimum, "max": s.maximum, "mean": s.mean, "sigma_data": s.std,
        "channel_mean": list(s.channel_mean), "channel_std": list(s.channel_std),
        "hflip": bundle.hflip,
    }
    if latents is not None:
        ls = latents.stats
        report["latents"] = {"name": r.parts["latents"].name, "shape": list(latents.shape),
                             "min": ls.minimum, "max": ls.maximum, "mean": ls.mean,
                             "sigma_data": ls.std}
    if as_json:
        typer.echo(json.dumps(report, indent=1))
        return
    fmt = ", ".join
    typer.echo(f"data        {part.name} ({bundle.kind}, one item {list(bundle.shape)})")
    typer.echo(f"items       {report['train']} training, {report['heldout']} held out")
    if bundle.num_classes:
        names = f": {fmt(bundle.class_names)}" if bundle.class_names else ""
        typer.echo(f"classes     {bundle.num_classes}{names}")
    typer.echo(f"range       [{s.minimum:.4g}, {s.maximum:.4g}]")
    typer.echo(f"mean        {s.mean:.5f}   per channel: {fmt(f'{v:.5f}' for v in s.channel_mean)}")
    typer.echo(f"std         {s.std:.5f}   per channel: {fmt(f'{v:.5f}' for v in s.channel_std)}")
    if latents is None:
        typer.echo(f"sigma_data  {s.std:.5f}   (the training set's std over all values; "
                   f'sigma_data = "data" uses it)')
        return
    ls = latents.stats
    typer.echo(f"latents     {r.parts['latents'].name}: one item {list(latents.shape)}, range "
               f"[{ls.minimum:.4g}, {ls.maximum:.4g}], mean {ls.mean:.5f}")
    typer.echo(f"sigma_data  {ls.std:.5f}   (the encoded training set's std over all values; "
               f'sigma_data = "data" uses it)')
