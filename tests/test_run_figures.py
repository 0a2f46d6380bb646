"""The figures every run logs at start can be drawn for the shipped recipes' parts."""

import numpy as np
import pytest

from difftk.analysis.run_figures import RUN_FIGURES
from difftk.recipe import load_recipe
from difftk.run.assemble import resolve_sigma_data

# One recipe per distinct pairing the figures must handle: EDM, DDPM, the posterior-mean
# target (needs the schedule's table) and the ELBO weight (a t-space weight).
RECIPES = ["edm.toml", "ddpm.toml", "foundations/01_direct_direct_vlb.toml",
           "final_project/02_eps_elbo_weight.toml"]


@pytest.mark.parametrize("name", RECIPES)
def test_run_figures_draw_for_shipped_recipes(root, name):
    recipe = resolve_sigma_data(load_recipe(root / "recipes" / name, warn=False), 0.75)
    tags = []
    for figure in RUN_FIGURES:
        for tag, image in figure(recipe):
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
            assert image.std() > 0  # something was drawn
            tags.append(tag)
    assert {"schedule", "noise_sampling", "weight"} <= set(tags)


def test_grids_of_small_images_are_upscaled_by_nearest_neighbour_to_be_seen():
    import torch

    from difftk.eval.figures import image_grid

    x = torch.rand(4, 1, 8, 8) * 2 - 1
    grid = image_grid(x)  # 2 x 2 tiles of 8 px with 1 px gaps, times 4
    assert grid.shape == ((2 * 9 + 1) * 4, (2 * 9 + 1) * 4, 3)
    tile = grid[4:36, 4:36, 0]  # the first image, each pixel a 4 x 4 block
    assert (tile == tile[::4, ::4].repeat(4, 0).repeat(4, 1)).all()
    assert image_grid(torch.zeros(1, 3, 64, 64)).shape[0] == 66  # 32 px and up: as they are
