"""What a recipe's network takes and emits, with or without loading its data set.

``difftk info --shape 3,32,32`` measures a network for a shape no data set is loaded for;
the spec still comes from the trainer's own rule (run/assemble.py ``data_spec``), fed a
stand-in data set of that shape, so the two can never disagree.
"""

from __future__ import annotations

import torch

from difftk.data.dataset import DataBundle
from difftk.nn.architecture import DataSpec
from difftk.recipe import Recipe
from difftk.run.assemble import data_spec
from difftk.run.training_data import training_data


def network_spec(recipe: Recipe, shape: tuple[int, ...] | None = None,
                 num_classes: int = 0) -> DataSpec:
    """The recipe's DataSpec: from its data set (encoded in its latents), or for ``shape``
    with ``num_classes`` classes (0: unconditional) without loading any data."""
    if shape is None:  # the data set in the recipe's [latents]: what the network sees
        return data_spec(recipe, training_data(recipe, torch.device("cpu")).data)
    one = torch.zeros((1, *shape))  # one item: a data set must hold something to train on
    labels = torch.zeros(1, dtype=torch.long) if num_classes else None
    stand_in = DataBundle(train=one, heldout=one, train_labels=labels,
                          heldout_labels=labels, num_classes=num_classes)
    train = recipe.train.model_copy(update={"class_conditional": num_classes > 0,
                                            "label_dropout": 0.0})
    return data_spec(Recipe(recipe.run, train, recipe.log, recipe.parts), stand_in)
