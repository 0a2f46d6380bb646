"""The files ``difftk new-plugin`` writes, per family: relative path -> text.

Both are ``str.format`` templates over distribution, package, component, class_name,
family, what ("a loss weighting") and difftk_version (so literal braces are doubled).
Weightings have their own README and a formula test; every other family shares the
README and test below around its component (components.py).
"""

from __future__ import annotations

from difftk.scaffold.components import COMPONENTS, module_template

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{distribution}"
version = "0.1.0"
description = "{what_cap} for difftk."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["difftk>={difftk_version}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# difftk finds the plugin through this entry point: group "difftk", value = the module
# whose @hookimpl functions register components.
[project.entry-points.difftk]
{distribution} = "{package}"

[tool.setuptools]
packages = ["{package}"]
'''

WEIGHTS_README = '''# {distribution}

A loss weighting for difftk, shipped as its own package: the sigmoid weighting of
Kingma & Gao 2023 ("Understanding Diffusion Objectives as the ELBO with Simple Data
Augmentation", §5), on the trained target's MSE (their eps-MSE for an eps-model):

    w(logSNR) = sigmoid(bias - logSNR) = 1 / (1 + SNR e^-bias)

It tends to 1 at high noise and to e^bias / SNR at low noise. Replace the formula in
`{package}/__init__.py` with yours, keep the docstring's first line short (it is what
`difftk list-plugins` shows) and give every parameter a description.

    pip install -e .                          # or: pip install --no-deps --no-build-isolation .
    difftk list-plugins --family weights      # shows {component}, provider {distribution}
    difftk train RECIPE.toml --set weight.name={component} --set weight.bias=1

Tests: `pytest tests` runs difftk's contract checks for weightings (difftk.testing: finite
and non-negative over the whole SNR range, per-sample, honours relative_to, parameters
documented and round-tripping through TOML) and the formula at five SNRs.
'''

WEIGHTS_MODULE = '''"""{class_name}: a difftk loss weighting (Kingma & Gao 2023's sigmoid weighting)."""

import torch
from pydantic import Field

import difftk
from difftk import hookimpl


class {class_name}(difftk.Weighting):
    """Sigmoid weighting w = sigmoid(bias - logSNR) on the target's MSE (Kingma & Gao 2023).

    relative_to = "target" (the default inherited from difftk.Weighting) weights the
    trained target's MSE, as the paper weights the eps-MSE; relative_to = "x0" weights
    the x0-MSE instead.
    """

    name = "{component}"
    bias: float = Field(0.0, description="logSNR at which the weight is 1/2")

    def __call__(self, snr: torch.Tensor) -> torch.Tensor:
        # sigmoid(bias - log SNR) = 1 / (1 + SNR e^-bias): finite at SNR = 0 and SNR = inf.
        return 1.0 / (1.0 + snr * torch.exp(torch.tensor(-self.bias, dtype=snr.dtype)))


@hookimpl
def register_weights(register):
    register({class_name})
'''

WEIGHTS_TEST = '''"""{distribution}: difftk's contract checks, the formula, the entry point."""

import importlib.metadata
import math

import pytest
import torch

from difftk.registry import build_registry
from difftk.testing import parametrize_with_checks
from {package} import {class_name}


@parametrize_with_checks([{class_name}(), {class_name}(bias=2.0, relative_to="x0")])
def test_difftk_contract(component, check):
    check(component)


def _installed() -> bool:
    try:
        importlib.metadata.distribution("{distribution}")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.parametrize("snr", [1e-4, 1e-2, 1.0, 1e2, 1e4])
def test_formula(snr):
    w = {class_name}(bias=1.0)(torch.tensor([snr], dtype=torch.float64))
    assert float(w) == pytest.approx(1.0 / (1.0 + math.exp(math.log(snr) - 1.0)), rel=1e-12)


@pytest.mark.skipif(not _installed(), reason="the entry point exists once installed (pip install -e .)")
def test_found_through_its_entry_point(monkeypatch):
    monkeypatch.delenv("DIFFTK_LOAD_PLUGINS", raising=False)
    entry = build_registry().get("weights", "{component}")
    assert entry.provider.package == "{distribution}" and not entry.provider.builtin
'''

GENERIC_README = '''# {distribution}

{what_cap} for difftk, shipped as its own package: `{class_name}` in
`{package}/__init__.py`, a working example to replace with yours. Keep the docstring's
first line short (it is what `difftk list-plugins` shows) and give every parameter a
description.

    pip install -e .                              # or: pip install --no-deps --no-build-isolation .
    difftk list-plugins --family {family}         # shows {component}, provider {distribution}
    difftk train RECIPE.toml --set {section}.{names_field}={component}

Tests: `pytest tests` runs difftk's contract checks for the family (difftk.testing) and,
once the package is installed, finds the component through its entry point.
'''

GENERIC_TEST = '''"""{distribution}: difftk's contract checks and the entry point."""

import importlib.metadata

import pytest

from difftk.registry import build_registry
from difftk.testing import parametrize_with_checks
from {package} import {class_name}


@parametrize_with_checks([{class_name}()])
def test_difftk_contract(component, check):
    check(component)


def _installed() -> bool:
    try:
        importlib.metadata.distribution("{distribution}")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason="the entry point exists once installed (pip install -e .)")
def test_found_through_its_entry_point(monkeypatch):
    monkeypatch.delenv("DIFFTK_LOAD_PLUGINS", raising=False)
    entry = build_registry().get("{family}", "{component}")
    assert entry.provider.package == "{distribution}" and not entry.provider.builtin
'''

TEMPLATES: dict[str, dict[str, str]] = {
    "weights": {
        "pyproject.toml": PYPROJECT,
        "README.md": WEIGHTS_README,
        "{package}/__init__.py": WEIGHTS_MODULE,
        "tests/test_{component}.py": WEIGHTS_TEST,
    },
    **{family: {"pyproject.toml": PYPROJECT, "README.md": GENERIC_README,
                "{package}/__init__.py": module_template(family),
                "tests/test_{component}.py": GENERIC_TEST} for family in COMPONENTS},
}
