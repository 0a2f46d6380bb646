"""difftk info --shape: the spec comes from the trainer's data_spec, without loading data."""

from difftk.eval.network_input import network_spec
from difftk.recipe import load_recipe


def test_a_stated_shape_gives_the_trainers_spec(root):
    r = load_recipe(root / "recipes/foundations/10_eps_learned_range_hybrid.toml", warn=False)
    assert r.parts["variance"].learned
    spec = network_spec(r, (3, 16, 16), 0)
    assert (spec.shape, spec.out_channels, spec.num_classes) == ((3, 16, 16), 6, 0)
    conditional = network_spec(r, (3, 16, 16), 10)
    assert conditional.num_classes == 10
    # a recipe that is class-conditional but measured without --classes gets no classes
    r = load_recipe(root / "recipes/ddpm.toml", ["train.class_conditional=true"], warn=False)
    assert network_spec(r, (1, 8, 8)).num_classes == 0
    # without a shape the recipe's data set decides: digits with their 10 classes
    loaded = network_spec(r)
    assert (loaded.shape, loaded.out_channels, loaded.num_classes) == ((1, 8, 8), 1, 10)
