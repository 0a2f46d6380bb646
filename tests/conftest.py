"""Core tests use the built-ins only; tests about third-party plugins opt back in."""

import os
from pathlib import Path

import pytest

os.environ["DIFFTK_LOAD_PLUGINS"] = ""
os.environ.setdefault("OMP_NUM_THREADS", "2")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def registry():
    from difftk.registry import default_registry

    return default_registry()
