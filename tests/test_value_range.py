"""Every consumer of pixel values reads the data's value range (data.mean, data.std), not an
assumed [-1, 1]: the same images stored in [-1, 1], in [0, 1] (seed 004's data / 255) and
normalised per channel give the same metrics, features, decoder likelihoods, grids and
clipping."""

import numpy as np
import pytest
import torch

from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.grids import Level
from difftk.diffusion.pixel_range import UNIT_RANGE, PixelRange
from difftk.diffusion.sampler_model import GuidedModel
from difftk.diffusion.vlb import discretized_gaussian_log_likelihood
from difftk.eval.features import feature_extractor
from difftk.eval.figures import image_grid
from difftk.eval.metrics import sample_metrics
from difftk.plugins.schedules import EDM
from difftk.plugins.targets import X0
from difftk.plugins.variance import FixedSmall

SCALINGS = {"minus_one_one": ([0.5], [0.5]), "zero_one": ([0.0], [1.0]),
            "per_channel": ([0.4, 0.5, 0.6], [0.2, 0.3, 0.25])}


def _pixels(n=64, seed=0):
    """8-bit images as p in [0, 1], 3 channels, 6x6."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 6, 6), generator=g).double() / 255


def _scaled(p, mean, std):
    m = torch.tensor(mean, dtype=torch.float64).reshape(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).reshape(1, -1, 1, 1)
    return (p - m) / s


@pytest.mark.parametrize("name", ["zero_one", "per_channel"])
def test_pixel_fid_and_kid_do_not_depend_on_the_scaling(name):
    """The defect this fixes: [0, 1] data scored as if in [-1, 1] gave a pixel FID 4x too
    small (the [0, 1] pixels halved)."""
    a, b = _pixels(seed=1), _pixels(seed=2) * 0.9
    reference = sample_metrics(_scaled(a, *SCALINGS["minus_one_one"]),
                               _scaled(b, *SCALINGS["minus_one_one"]), "image")
    mean, std = SCALINGS[name]
    pixel_range = PixelRange.from_scaling(mean, std)
    ours = sample_metrics(_scaled(a, mean, std), _scaled(b, mean, std), "image",
                          pixel_range=pixel_range)
    for key, value in reference.items():
        assert ours[key] == pytest.approx(value, rel=1e-6), key  # float32 images
    if name == "zero_one":  # what the old [-1, 1] assumption computed
        wrong = sample_metrics(_scaled(a, *SCALINGS[name]), _scaled(b, *SCALINGS[name]), "image")
        assert wrong["pixel_fid"] == pytest.approx(reference["pixel_fid"] / 4, rel=1e-6)


class _MeanNet(torch.nn.Module):
    """A stand-in feature network: the per-channel means of its 0-255 input."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        class Out:
            pool = x.flatten(2).mean(2) * self.w
        return Out()


@pytest.mark.parametrize("name", ["zero_one", "per_channel"])
def test_feature_quantisation_reads_the_range(name):
    p = _pixels(n=8, seed=3)
    extract = feature_extractor(_MeanNet(), convention="pytorch_fid")
    reference = extract(_scaled(p, *SCALINGS["minus_one_one"]).float())
    mean, std = SCALINGS[name]
    ours = extract(_scaled(p, mean, std).float(), PixelRange.from_scaling(mean, std))
    assert np.allclose(ours, reference, atol=1e-6)


@pytest.mark.parametrize("name", ["zero_one", "per_channel"])
def test_the_decoders_bins_are_the_datas_levels(name):
    """log P(level) under N(mean, s) is invariant when data, mean and s are scaled together:
    the bins follow the data's levels (seed 003 Algorithm 2)."""
    p = _pixels(n=4, seed=4)
    g = torch.Generator().manual_seed(5)
    model_p = (p + 0.01 * torch.randn(p.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    log_s_unit = torch.full_like(p, -4.0)  # s = e^-4 in [0, 1] pixels
    ref_mean, ref_std = SCALINGS["minus_one_one"]

    def loglik(mean, std, pixel_range):
        x, mu = _scaled(p, mean, std), _scaled(model_p, mean, std)
        scale = torch.tensor(std, dtype=torch.float64).reshape(1, -1, 1, 1).expand_as(p)
        return discretized_gaussian_log_likelihood(x, mu, log_s_unit - scale.log(),
                                                   pixel_range=pixel_range)

    reference = loglik(ref_mean, ref_std, UNIT_RANGE)
    mean, std = SCALINGS[name]
    ours = loglik(mean, std, PixelRange.from_scaling(mean, std))
    assert torch.allclose(ours, reference, atol=1e-9)


@pytest.mark.parametrize("name", ["zero_one", "per_channel"])
def test_sample_grids_show_the_same_pixels(name):
    p = _pixels(n=4, seed=6)
    reference = image_grid(_scaled(p, *SCALINGS["minus_one_one"]).float())
    mean, std = SCALINGS[name]
    ours = image_grid(_scaled(p, mean, std).float(), pixel_range=PixelRange.from_scaling(mean, std))
    assert np.array_equal(ours, reference)


def test_clip_denoised_clamps_to_the_datas_range():
    class Far(torch.nn.Module):
        def forward(self, x, time, labels=None):
            return torch.full_like(x, 7.0)

    mean, std = SCALINGS["per_channel"]
    pixel_range = PixelRange.from_scaling(mean, std)
    denoiser = Denoiser(Far(), EDM(), X0(), FixedSmall(), pixel_range=pixel_range)
    model = GuidedModel(denoiser, None)
    x0 = model(torch.zeros(2, 3, 4, 4), Level(1.0, 0.5)).x0
    clipped = model.clip(x0)
    hi = torch.tensor(pixel_range.hi).reshape(1, 3, 1, 1)
    assert torch.allclose(clipped, hi.expand_as(clipped).float())
    assert GuidedModel(Denoiser(Far(), EDM(), X0(), FixedSmall(), pixel_range=None),
                       None).clip(x0).max() == 7.0  # latents: nothing to clamp to


def test_a_recipes_scaling_reaches_the_denoiser_and_the_objective(root):
    from difftk.recipe import load_recipe
    from difftk.run.assemble import assemble, data_spec, pixel_range_of
    from difftk.run.training_data import training_data

    r = load_recipe(root / "recipes/edm.toml", ["data.mean=[0.0]", "data.std=[1.0]",
                                                "model.channels=8", "model.channel_mult=[1]",
                                                'target.sigma_data=0.5', 'weight.sigma_data=0.5'],
                    warn=False)
    spec = data_spec(r, training_data(r, torch.device("cpu")).data)
    asm = assemble(r, spec, torch.device("cpu"))
    assert pixel_range_of(r, spec) == PixelRange((0.0,), (1.0,))
    assert asm.denoiser.pixel_range == PixelRange((0.0,), (1.0,))
    assert asm.objective.pixel_range == PixelRange((0.0,), (1.0,))
