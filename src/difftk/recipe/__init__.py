"""Recipes: TOML in, validated components out, fully resolved TOML back.

Each component section is ``{name = "...", ...params}`` validated against the
component's own pydantic model; ``run``, ``train`` and ``log`` are plain settings.
``--set a.b=v`` overrides any field before validation; setting a section's ``name``
drops the parameters the file gave the old component (they belong to it) and says so.
Every problem is reported with the recipe path of the field.
"""

from difftk.recipe.components import component_from_spec, component_from_table, sampler_with_overrides
from difftk.recipe.loading import load_recipe, parse_recipe_text, recipe_from_text, toml_dict
from difftk.recipe.overrides import apply_overrides, parse_value
from difftk.recipe.resolved import Recipe, logger_parts
from difftk.recipe.sections import COMPONENT_SECTIONS, SETTINGS, LogSection, RunSection, TrainSection
from difftk.recipe.validation import grid_problems, validate, validate_settings

__all__ = ["COMPONENT_SECTIONS", "SETTINGS", "LogSection", "Recipe", "RunSection", "TrainSection",
           "apply_overrides", "component_from_spec", "component_from_table", "grid_problems",
           "load_recipe", "logger_parts", "parse_recipe_text", "parse_value", "recipe_from_text",
           "sampler_with_overrides", "toml_dict", "validate", "validate_settings"]
