"""The plugin is found through its entry point and implements its formula."""

import json
import os
import subprocess
import sys

import pytest
import torch
from difftk_soft_min_snr import SoftMinSNR

from difftk.registry import build_registry
from difftk.testing import parametrize_with_checks


@parametrize_with_checks([SoftMinSNR(), SoftMinSNR(gamma=1.0, relative_to="target")])
def test_difftk_contract(component, check):
    """difftk's contract for weightings (difftk.testing), as every plugin runs it."""
    check(component)


@pytest.fixture
def weighting(monkeypatch):
    monkeypatch.delenv("DIFFTK_LOAD_PLUGINS", raising=False)
    registry = build_registry()
    entry = registry.get("weights", "soft_min_snr")
    assert entry.provider.package == "difftk-soft-min-snr"
    assert not entry.provider.builtin
    return entry.cls


@pytest.mark.parametrize("snr", [1e-4, 1e-2, 1.0, 4.0, 1e2, 1e4])
def test_formula(weighting, snr):
    w = weighting(gamma=4.0)
    s = torch.tensor([snr], dtype=torch.float64)
    expected = 1.0 / (1.0 / snr + 1.0 / 4.0)
    assert float(w(s)) == pytest.approx(expected, rel=1e-12)


def test_soft_min_bounds(weighting):
    s = torch.logspace(-6, 6, 101, dtype=torch.float64)
    w = weighting(gamma=5.0)(s)
    hard = torch.clamp(s, max=5.0)
    assert torch.all(w <= hard) and torch.all(w >= hard / 2)
    assert float(w[0] / s[0]) == pytest.approx(1.0, rel=1e-5)
    assert float(w[-1]) == pytest.approx(5.0, rel=1e-5)


def test_listed_with_provider():
    env = {k: v for k, v in os.environ.items() if k != "DIFFTK_LOAD_PLUGINS"}
    out = subprocess.run([sys.executable, "-m", "difftk.cli", "list-plugins", "--family",
                          "weights", "--json"], capture_output=True, text=True, env=env,
                         check=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)["families"]["weights"]}
    assert rows["soft_min_snr"]["provider"] == "difftk-soft-min-snr"
    assert rows["soft_min_snr"]["version"] == "0.1.0"
