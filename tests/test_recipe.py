"""Recipes validate, resolve every default, and fail with the field's path."""

import subprocess
import sys
import tomllib

import pytest
from typer.testing import CliRunner

from difftk.cli import app
from difftk.errors import RecipeError
from difftk.recipe import load_recipe, recipe_from_text

runner = CliRunner()


def recipes(root):
    return sorted((root / "recipes").rglob("*.toml"))


def test_every_shipped_recipe_validates(root):
    found = recipes(root)
    assert len(found) >= 3
    for path in found:
        if set(tomllib.loads(path.read_text())) == {"latents"}:  # a codec for difftk data encode
            continue
        if "autoencoder" in tomllib.loads(path.read_text()):  # difftk train-autoencoder's
            from difftk.latents.autoencoder_recipe import load_autoencoder_recipe

            load_autoencoder_recipe(path)
            continue
        r = load_recipe(path)
        # The resolved recipe is complete and reads back to itself.
        assert recipe_from_text(r.to_toml()).to_dict() == r.to_dict()


def test_validate_prints_every_default(root):
    out = runner.invoke(app, ["validate", str(root / "recipes/edm.toml")])
    assert out.exit_code == 0, out.stderr
    data = tomllib.loads(out.stdout)
    assert data["noise_sampling"] == {"name": "log_normal", "importance": False, "P_mean": -1.2,
                                      "P_std": 1.2}
    assert data["loss"] == {"name": "mse", "reduction": "mean"}
    assert data["sampler"]["rho"] == 7.0


def test_set_overrides_and_name_change_resets(root):
    r = load_recipe(root / "recipes/edm.toml",
                    ["weight.name=min_snr", "weight.gamma=3", "train.steps=7"], warn=False)
    assert r.parts["weight"].name == "min_snr" and r.parts["weight"].gamma == 3
    assert r.train.steps == 7


@pytest.mark.parametrize("override, path, words", [
    ("weight.gamma=-1", "weight.gamma", "greater than 0"),
    ("weight.gama=3", "weight.gama", 'did you mean "gamma"'),
    ("train.stepz=3", "train.stepz", 'did you mean "steps"'),
    ("schedule.name=linaer", "schedule.name", 'did you mean "linear"'),
    ("sampler.steps=-2", "sampler.steps", "greater than or equal to 1"),
])
def test_bad_value_names_the_field(root, override, path, words):
    args = ["validate", str(root / "recipes/edm.toml"), "--set", override]
    if override.startswith("weight.gam"):
        args += ["--set", "weight.name=min_snr"]
    out = runner.invoke(app, args)
    assert out.exit_code == 2
    assert path in out.stderr and words in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_impossible_pair_is_refused(root):
    with pytest.raises(RecipeError, match="steps through a table"):
        load_recipe(root / "recipes/edm.toml", ["sampler.name=ddpm"], warn=False)


def test_bad_recipe_in_a_real_process(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nname = "digits"\n[model]\nname = "mlp"\n[weight]\nname = "edm"\n'
                   'sigma_data = -2\n[unknown]\nx = 1\n')
    out = subprocess.run([sys.executable, "-m", "difftk.cli", "validate", str(bad)],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    for expected in ("unknown section [unknown]", "[schedule] section", "weight.sigma_data"):
        assert expected in out.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[run\n")
    out = subprocess.run([sys.executable, "-m", "difftk.cli", "validate", str(broken)],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "not valid TOML" in out.stderr and "Traceback" not in out.stderr
