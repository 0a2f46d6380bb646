"""EDM's augmentation pipeline ([augment] name = "edm"; Karras et al. 2022, App. F.2): each
transform against its closed form on a tiny image, labels that reach the network (zeros at
sampling time), training from a recipe with it on, and resume equality."""

import math

import pytest
import torch
from typer.testing import CliRunner

from difftk.cli import app
from difftk.data.image_transforms import resample_affine, rotation, shift_pixels
from difftk.errors import DataError, RecipeError
from difftk.nn.architecture import DataSpec
from difftk.plugins import augmentations
from difftk.plugins.augmentations import EdmAugment, NoAugmentation
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

OFF = dict(xflip=0, yflip=0, rotate_int=0, translate_int=0, scale=0, rotate_frac=0, aniso=0,
           translate_frac=0)


def only(**on) -> EdmAugment:
    """EDM's pipeline with every augmentation off but ``on``, at p = 1."""
    return EdmAugment(**{**OFF, "p": 1.0, **on})


def images(n=16, c=2, size=8, seed=0):
    return torch.rand((n, c, size, size), generator=torch.Generator().manual_seed(seed))


def draws(aug, n=16, seed=0, **columns):
    """The pipeline's draws with some columns set by hand."""
    d = aug.draw(n, torch.Generator().manual_seed(seed), "cpu")
    for column, value in columns.items():
        d[:, getattr(augmentations, column)] = value  # e.g. SCALE_N
    return d


def blob(size=16, at=(2.0, -1.0)):
    """A smooth, off-centre Gaussian (band-limited enough for the resampling to be exact)."""
    y, x = torch.meshgrid(torch.arange(size) - (size - 1) / 2, torch.arange(size) - (size - 1) / 2,
                          indexing="ij")
    return torch.exp(-((x - at[0]) ** 2 + (y - at[1]) ** 2) / 8)[None, None]


def test_edm_cifar10_defaults_have_nine_labels():
    """EDM's CIFAR-10 setting: xflip=1e8, yflip, scale, rotate_frac, aniso, translate_frac."""
    aug = EdmAugment()
    assert (aug.p, aug.xflip) == (0.12, 1e8) and aug.label_dim() == 9
    x = images()
    out, labels = aug.apply(x, aug.draw(16, torch.Generator().manual_seed(0), "cpu"))
    assert out.shape == x.shape and labels.shape == (16, 9)
    assert set(labels[:, 0].tolist()) == {0.0, 1.0}  # xflip 1e8 x 0.12: a flip half the time


def test_p_zero_is_the_identity_with_zero_labels():
    aug = EdmAugment(p=0.0, rotate_int=1, translate_int=1)
    x = images()
    out, labels = aug.apply(x, aug.draw(16, torch.Generator().manual_seed(3), "cpu"))
    assert torch.equal(out, x)
    assert labels.shape == (16, 13) and torch.equal(labels, torch.zeros_like(labels))


def test_none_changes_nothing_and_has_no_labels():
    x = images()
    out, labels = NoAugmentation().apply(x, NoAugmentation().draw(16, torch.Generator(), "cpu"))
    assert out is x and labels is None and NoAugmentation().label_dim() == 0


@pytest.mark.parametrize("name, dim", [("xflip", 3), ("yflip", 2)])
def test_a_flip_is_a_flip_and_its_label_says_which(name, dim):
    aug = only(**{name: 1e8})
    x = images()
    out, labels = aug.apply(x, draws(aug))
    flipped = labels[:, 0].bool()
    assert 0 < flipped.sum() < 16 and labels.shape == (16, 1)
    assert torch.equal(out[flipped], x[flipped].flip(dim))
    assert torch.equal(out[~flipped], x[~flipped])


def test_a_quarter_turn_equals_rot90():
    aug = only(rotate_int=1e8)
    x = images(n=32)
    out, labels = aug.apply(x, draws(aug, n=32))
    lr, ud = labels[:, 0].long(), labels[:, 1].long()
    turns = torch.where(lr == 1, 1 + ud, 3 * ud)  # (lr, ud): (0,0) 0, (1,0) 1, (1,1) 2, (0,1) 3
    assert set(turns.tolist()) == {0, 1, 2, 3}
    for i in range(32):
        assert torch.equal(out[i], torch.rot90(x[i], int(turns[i]), dims=(1, 2))), i


def test_quarter_turns_refuse_non_square_images():
    with pytest.raises(DataError, match="square"):
        only(rotate_int=1).apply(torch.zeros(2, 1, 8, 6), torch.zeros(2, 20))


def test_integer_translation_shifts_pixels_and_mirrors_the_border():
    aug = only(translate_int=1, translate_int_max=0.25)  # up to 2 pixels of 8
    x = images(n=1)
    # u = 0.75 -> (2u - 1) * 2 = 1 pixel right; u = 0.25 -> 1 pixel up.
    out, labels = aug.apply(x, draws(aug, n=1, SHIFT_GATE=0.0, SHIFT_X=0.75, SHIFT_Y=0.25))
    expect = torch.empty_like(x)
    for row in range(8):
        for col in range(8):
            src_row, src_col = row + 1, col - 1  # out[y, x] = in[y - ty, x - tx], ty = -1
            src_row = 6 if src_row == 8 else src_row  # mirrored: 8 -> 6
            src_col = 1 if src_col == -1 else src_col  # mirrored: -1 -> 1
            expect[..., row, col] = x[..., src_row, src_col]
    assert torch.equal(out, expect)
    assert labels.tolist() == [[0.5, -0.5]]  # the shift over its range, 2 pixels


def test_fractional_translation_by_whole_pixels_is_the_pixel_shift():
    aug = only(translate_frac=1, translate_frac_std=0.125)  # 1 pixel of 8 per unit
    x = images(n=2)
    out, labels = aug.apply(x, draws(aug, n=2, TRANSLATE_GATE=0.0, TRANSLATE_NX=2.0,
                                     TRANSLATE_NY=-1.0))
    shifted = shift_pixels(x, torch.tensor([2, 2]), torch.tensor([-1, -1]))
    assert torch.allclose(out, shifted, atol=1e-5)
    assert labels.tolist() == [[2.0, -1.0], [2.0, -1.0]]


def test_a_quarter_rotation_through_the_resampler_matches_rot90():
    """The band-limited resampler (ADA App. B.1) rotating a smooth image by pi/2."""
    aug = only(rotate_frac=1)
    x = blob()
    out, labels = aug.apply(x, draws(aug, n=1, ROTATE_GATE=0.0, ROTATE=0.75))  # (2u-1) pi
    assert torch.allclose(labels, torch.tensor([[-1.0, 1.0]]), atol=1e-6)  # cos - 1, sin
    assert (out - torch.rot90(x, 1, dims=(2, 3))).abs().max() < 0.03
    assert (out - x).abs().max() > 0.5  # the blob did move


# The symlet-6 filter is not symmetric: scaling moves its phase by a few hundredths of a
# pixel (0.03 px x slope 0.3), as in EDM's own pipeline. Swapping the axes' scales would be off
# by more than 0.5.
PHASE = 0.015


def ramp(size=16, a=0.3, b=-0.2):
    y, x = torch.meshgrid(torch.arange(size) - (size - 1) / 2, torch.arange(size) - (size - 1) / 2,
                          indexing="ij")
    return (a * x + b * y)[None, None], x, y


def test_isotropic_scaling_of_a_ramp():
    """Scaling by s about the centre: a ramp a x + b y becomes (a x + b y) / s inside."""
    aug = only(scale=1, scale_std=0.5)
    image, _, _ = ramp()
    out, labels = aug.apply(image, draws(aug, n=1, SCALE_GATE=0.0, SCALE_N=1.0))  # s = 2^0.5
    inside = (slice(None), slice(None), slice(5, -5), slice(5, -5))
    assert torch.allclose(out[inside], (image / 2 ** 0.5)[inside], atol=PHASE)
    assert labels.tolist() == [[1.0]]


def test_anisotropic_scaling_of_a_ramp_along_the_axes():
    """Along the axes (no random direction): x scaled by s, y by 1 / s."""
    aug = only(aniso=1, aniso_std=0.5)
    image, x, y = ramp(size=24)  # y stretched by s reads 1.4x farther out: a larger image
    out, labels = aug.apply(image, draws(aug, n=1, ANISO_GATE=0.0, ANISO_N=1.0,
                                         ANISO_ANGLE_GATE=0.99))
    s = 2 ** 0.5
    expect = 0.3 * x / s - 0.2 * y * s
    inside = (slice(8, -8), slice(8, -8))
    assert torch.allclose(out[0, 0][inside], expect[inside], atol=PHASE)
    assert labels.tolist() == [[1.0, 0.0]]  # w cos r, w sin r with r = 0


def test_resampling_with_the_identity_map_keeps_the_image():
    x = images(n=3)
    assert torch.allclose(resample_affine(x, torch.eye(3).expand(3, 3, 3)), x, atol=1e-5)
    assert torch.allclose(resample_affine(x, rotation(torch.full((3,), 2 * math.pi))), x,
                          atol=1e-4)


def randomised(net):
    """The network with every weight drawn at random: its zero-initialised layers (output
    heads, residual convs, adaLN-Zero) would otherwise hide any conditioning input."""
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
    return net


@pytest.mark.parametrize("name, params", [
    ("unet", dict(channels=8, channel_mult=[1], attention_resolutions=[])),
    ("dit", dict(depth=1, hidden_size=32, num_heads=2, patch_size=4))])
def test_labels_reach_the_network_and_none_means_zeros(registry, name, params):
    """SongUNet's augment_dim: a bias-free map of the labels into the noise embedding, so
    labels of zeros (sampling time, augment_labels=None) are the unaugmented network."""
    net = randomised(registry.get("architectures", name).cls(**params).build(
        DataSpec((1, 8, 8), 1, augment_dim=9)))
    assert net.noise_embed.augment.bias is None and net.noise_embed.augment.in_features == 9
    x, t = images(n=4, c=1), torch.full((4,), 0.5)
    plain = net(x, t, None)
    zeros = net(x, t, None, augment_labels=torch.zeros(4, 9))
    moved = net(x, t, None, augment_labels=torch.eye(4, 9))
    assert torch.allclose(plain, zeros)
    for i in range(4):  # each item's own labels move its own output
        assert not torch.allclose(plain[i], moved[i], atol=1e-4), i


TINY = ["model.channels=8", "model.channel_mult=[1]", "model.attention_resolutions=[]",
        "model.mid_attention=false", "train.batch_size=16", "log.every=1", "log.val_every=0",
        "log.sample_every=0", "log.checkpoint_every=0", "log.num_samples=2", "sampler.steps=2",
        "log.tensorboard=false", 'lr_schedule.name="constant"', 'precision.name="fp32"',
        "data.limit=64"]
EDM = ['augment.name="edm"', "augment.p=0.5"]


def test_an_architecture_without_augment_labels_is_refused(root):
    with pytest.raises(RecipeError) as exc:
        load_recipe(root / "recipes/toy2d.toml", ['augment.name="edm"'], warn=False)
    assert exc.value.problems == [("augment.name", 'the edm augmentation passes augmentation '
                                   'labels to the network, and the architecture "mlp" cannot '
                                   'take them; use unet or dit, or [augment] name = "none"')]


def test_training_with_augmentation_resumes_exactly_and_samples(root, tmp_path):
    common = [f'run.out_dir="{tmp_path}"', *TINY, *EDM]

    def run(name, steps, resume=False, checkpoint_every=0):
        r = load_recipe(root / "recipes/edm.toml", [*common, f'run.name="{name}"',
                                                    f"train.steps={steps}"], warn=False)
        trainer = Trainer(r, make_runtime("cpu"), resume=resume, progress=False)
        assert trainer.optimisation_step.noise.augmentation.label_dim() == 9
        trainer.fit()
        return trainer.model.state_dict()

    whole = run("whole", 4)
    assert whole["net.noise_embed.augment.weight"].shape == (8, 9)
    run("split", 2)
    resumed = run("split", 4, resume=True)
    for key, value in whole.items():
        assert torch.equal(value, resumed[key]), key
    out = CliRunner().invoke(app, ["sample", str(tmp_path / "whole"), "-n", "2", "--steps", "2",
                                   "-o", str(tmp_path / "s.npz")])
    assert out.exit_code == 0, out.output
    assert "augment" in (tmp_path / "whole" / "recipe.toml").read_text()


def test_the_augmentation_changes_the_training_batch(root, tmp_path):
    """Augmentation is applied inside the step, before noising: the same run without it
    trains on other images and ends elsewhere."""
    def final(augment):
        name = "on" if augment else "off"
        sets = [f'run.out_dir="{tmp_path}"', *TINY, f'run.name="{name}"', "train.steps=2"]
        r = load_recipe(root / "recipes/edm.toml", sets + (EDM if augment else []), warn=False)
        trainer = Trainer(r, make_runtime("cpu"), progress=False)
        trainer.fit()
        return trainer.model.state_dict()["net.inp.weight"]

    assert not torch.equal(final(True), final(False))
