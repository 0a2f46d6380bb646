"""What a recipe trains on: its data set in its [latents] (the pixels themselves by default).

One function, so everything that trains, times or sizes a recipe (``difftk train``, ``bench``,
``info``, ``memory``, benchmarks/recipe_times.py) works in the space the recipe names: a
latent recipe timed on pixels measures another network on another shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from difftk.data.dataset import DataBundle
from difftk.latents.encoded_data import encode_data, latent_set
from difftk.latents.latents import LatentCodec
from difftk.recipe import Recipe


@dataclass(frozen=True)
class TrainingData:
    recipe: Recipe  # with its [latents] part resolved (an autoencoder's weights found)
    pixels: DataBundle  # the data set as loaded: what grids and FID show
    codec: LatentCodec  # pixels <-> the space diffusion runs in (on ``device``)
    data: DataBundle  # the data set in that space: what the network trains on


def training_data(recipe: Recipe, device: torch.device,
                  pixels: DataBundle | None = None) -> TrainingData:
    """The recipe's data (``pixels`` when given, else its [data] part loaded), encoded once
    (and cached on disk for an autoencoder, latents/encoded_data.py)."""
    pixels = recipe.parts["data"].load() if pixels is None else pixels
    recipe = recipe.with_parts(latents=recipe.parts["latents"].resolved())
    codec = recipe.parts["latents"].build(lambda: pixels).to(device)
    if pixels.encoded_with is not None:  # a latent set (difftk data encode): nothing to encode
        made = pixels.encoded_with
        if getattr(codec, "channel_mean", False) is None and made.get("latent_mean"):
            codec.channel_mean, codec.channel_std = made["latent_mean"], made["latent_std"]
        decoded, latents = latent_set(codec, pixels)
        return TrainingData(recipe, decoded, codec, latents)
    return TrainingData(recipe, pixels, codec, encode_data(codec, pixels, device))
