"""Property-based recipe fuzzing: a recipe is valid, or refused with one line per problem.

In-process, a few hundred hostile recipes and --set lists through ``validate`` (fast: no
torch work beyond what validation does); then a handful through the real CLI in a
subprocess, where the invariant is "exit 0, or a non-zero exit with one sentence and no
traceback". benchmarks/recipe_fuzz.py runs the same properties far longer.
"""

from __future__ import annotations

import copy
import tomllib

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plugin_packages import run_cli
from recipe_strategies import BASES, ROOT, hostile_recipes, set_items

from difftk.errors import DifftkError, RecipeError
from difftk.recipe import apply_overrides, recipe_from_text, validate
from difftk.registry import default_registry

# derandomize: the same examples on every CI run; the benchmark explores new ones.
FAST = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check_recipe(data: dict) -> None:
    """The invariant, for one recipe dict (raises AssertionError or the escaped exception)."""
    try:
        recipe = validate(data, default_registry(), "fuzz")
    except RecipeError as exc:
        assert exc.problems, "a RecipeError without a problem"
        for path, message in exc.problems:
            assert message and "\n" not in message and "\n" not in path, (path, message)
            assert "Traceback" not in message
        return
    again = recipe_from_text(recipe.to_toml(), source="round trip")
    assert again.to_dict() == recipe.to_dict()
    check_runnable(recipe)


def check_runnable(recipe) -> None:
    """What `train` does first with a valid recipe, cheaply: seed its streams, build its
    optimizer, find its device. Each must work or be a DifftkError (a sentence)."""
    from difftk.run.runtime import make_runtime

    for stream in range(3):  # the trainer's seed + 0, 1, 2
        torch.Generator().manual_seed(recipe.run.seed + stream)
    recipe.parts["optimizer"].build([torch.nn.Parameter(torch.zeros(2))])
    try:
        make_runtime(recipe.run.device)
    except DifftkError:
        pass  # e.g. "cuda" on a machine without one: a sentence, as it should be


def check_overrides(base: dict, items: list[str]) -> None:
    data = copy.deepcopy(base)
    problems = apply_overrides(data, items)
    for path, message in problems:
        assert "\n" not in message and "\n" not in path, (path, message)
    if not problems:
        check_recipe(data)


@FAST
@given(hostile_recipes())
def test_hostile_recipes_validate_or_are_refused_in_one_line_each(data):
    check_recipe(data)


@FAST
@given(st.sampled_from(sorted(BASES)), st.lists(set_items, min_size=1, max_size=4))
def test_hostile_set_items_validate_or_are_refused_in_one_line_each(base, items):
    check_overrides(BASES[base], items)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.text(max_size=200))
def test_arbitrary_text_is_a_recipe_or_a_recipe_error(text):
    try:
        check_recipe(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, RecursionError):
        with pytest.raises(RecipeError):
            recipe_from_text(text)


CLI_CASES = [
    ["--set", "run.name.x=1"],
    ["--set", "schedule.T=50000000", "--set", 'schedule.name="linear"'],
    ["--set", "run.seed=18446744073709551616"],
    ["--set", 'run.name="../../etc"'],
    ["--set", "optimizer.betas=[2, 3]"],
    ["--set", 'run.device="vulkan"'],
    ["--set", "noise_sampling.P_mean=nan"],
    ["--set", "train.steps=1\n2"],
    ["--set", "sampler.steps=" + "[" * 3000],
]


def _one_sentence_exit(code: int, stderr: str) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:") and len(lines) <= 3, stderr


@pytest.mark.parametrize("args", CLI_CASES, ids=range(len(CLI_CASES)))
def test_the_cli_refuses_each_case_with_one_sentence(args):
    from typer.testing import CliRunner

    from difftk.cli import app

    result = CliRunner().invoke(app, ["validate", str(ROOT / "recipes/toy2d.toml"), *args])
    _one_sentence_exit(result.exit_code, result.stderr)


@pytest.mark.parametrize("args", CLI_CASES[:3], ids=range(3))
def test_the_installed_cli_in_a_subprocess_too(tmp_path, args):
    out = run_cli(tmp_path, "validate", str(ROOT / "recipes/toy2d.toml"), *args)
    _one_sentence_exit(out.returncode, out.stderr)
