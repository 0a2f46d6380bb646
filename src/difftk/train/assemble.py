"""From a validated recipe to the objects a run uses: data, denoiser, objective, sampler."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from difftk.data.dataset import DataBundle
from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.objective import Objective
from difftk.errors import DataError
from difftk.nn.architecture import DataSpec
from difftk.recipe import Recipe


def resolve_sigma_data(recipe: Recipe, sigma_data: float) -> Recipe:
    """Replace every ``sigma_data = "data"`` parameter by the measured value."""
    updates = {}
    for section, part in recipe.parts.items():
        if getattr(part, "sigma_data", None) == "data":
            updates[section] = part.model_copy(update={"sigma_data": round(sigma_data, 5)})
    return recipe.with_parts(**updates) if updates else recipe


def data_spec(recipe: Recipe, data: DataBundle) -> DataSpec:
    """What the network takes and emits; ``train.class_conditional`` takes the class count
    from the data set, so a recipe never states a number that could disagree with it."""
    channels = data.shape[0]
    out = channels * (2 if recipe.parts["variance"].learned else 1)
    num_classes = 0
    if recipe.train.class_conditional:
        if not data.num_classes or data.train_labels is None:
            raise DataError(f'train.class_conditional needs a data set with class labels, and '
                            f'"{recipe.parts["data"].name}" has none')
        num_classes = data.num_classes
    return DataSpec(shape=data.shape, out_channels=out, num_classes=num_classes)


@dataclass
class Assembly:
    recipe: Recipe
    spec: DataSpec
    denoiser: Denoiser
    objective: Objective


def assemble(recipe: Recipe, spec: DataSpec, device: torch.device) -> Assembly:
    """Build the network and bind the recipe's parts around it."""
    p = recipe.parts
    torch.manual_seed(recipe.run.seed)  # network initialisation is part of the run's seed
    net = p["model"].build(spec).to(device)
    denoiser = Denoiser(net, p["schedule"], p["target"], p["variance"])
    objective = Objective.for_denoiser(denoiser, p["weight"], p["noise_sampling"], p["loss"])
    return Assembly(recipe, spec, denoiser, objective)
