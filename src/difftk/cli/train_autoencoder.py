"""difftk train-autoencoder: train the KL autoencoder a [latents] autoencoder part uses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from difftk.cli.app import SetOption


def train_autoencoder(
    recipe: Annotated[Path, typer.Argument(
        help="TOML recipe with [run], [data], [autoencoder], [log], e.g. "
             "recipes/latents/autoencoder_fashion_mnist.toml")],
    set_: SetOption = None,
    progress: Annotated[bool, typer.Option(
        help="Show progress: a bar on stderr when stdout is a terminal, else one line "
             "every log.every steps.")] = True,
):
    """Train a KL autoencoder; writes runs/<name>/autoencoder.safetensors and .json."""
    from difftk.latents.autoencoder_recipe import load_autoencoder_recipe
    from difftk.run.runtime import make_runtime
    from difftk.train.autoencoder_training import train_autoencoder as fit

    r = load_autoencoder_recipe(recipe, set_)
    device = make_runtime(r.run.device).device
    result = fit(r, device, progress)
    typer.echo(f"trained {r.autoencoder.steps} steps in {result.seconds:.0f}s; held-out MSE "
               f"per pixel {result.info['heldout_mse_per_pixel']:.4g}; latents "
               f"{result.info['latent_shape']} (std {result.info['latent_std']:.3g}); "
               f"weights: {result.weights}")
