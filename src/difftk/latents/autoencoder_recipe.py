"""The recipe of ``difftk train-autoencoder``: [run], [data], [autoencoder], [log].

[run] and [data] mean what they mean in a diffusion recipe (the same validation, the same
data sets); [autoencoder] holds the network's shape and its optimisation; [log] takes
``every`` (scalars), ``val_every`` (held-out reconstruction error), ``backends`` and
``tensorboard`` (the other [log] fields are accepted and unused).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import Field, ValidationError, field_validator

from difftk.errors import RecipeError, UnknownComponentError
from difftk.logger import flatten_config
from difftk.recipe import (
    LogSection,
    RunSection,
    apply_overrides,
    parse_recipe_text,
    validate_settings,
)
from difftk.recipe.messages import _errors
from difftk.recipe.sections import _Section


class AutoencoderSection(_Section):
    """A KL autoencoder's shape, loss weight and optimisation (Rombach et al. 2022)."""

    width: int = Field(64, ge=8, le=4096, description="feature channels of every level")
    latent_channels: int = Field(4, ge=1, le=4096, description="channels of the latents")
    downsample: int = Field(2, ge=1, le=256, description="downsampling factor f (a power of "
                            "two): latents are [latent_channels, H/f, W/f]")
    beta: float = Field(1e-4, ge=0, description="weight of the KL term on the per-image "
                        "squared error (LDM's kl_weight)")
    steps: int = Field(2000, ge=1, le=10**9, description="optimizer steps")
    batch_size: int = Field(128, ge=1, le=2**20, description="images per step")
    lr: float = Field(1e-3, gt=0, le=10, description="Adam learning rate")

    @field_validator("downsample")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two (each level halves the image)")
        return value


@dataclass
class AutoencoderRecipe:
    run: RunSection
    data: Any  # a Dataset component
    autoencoder: AutoencoderSection
    log: LogSection

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run.model_dump(),
                "data": {"name": self.data.name,
                         **{k: v for k, v in self.data.params().items() if v is not None}},
                "autoencoder": self.autoencoder.model_dump(), "log": self.log.model_dump()}

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def flat(self) -> dict:
        return flatten_config(self.to_dict())

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name


SECTIONS = {"run": RunSection, "autoencoder": AutoencoderSection, "log": LogSection}


def load_autoencoder_recipe(path: str | Path, overrides: list[str] | None = None,
                            registry=None) -> AutoencoderRecipe:
    """Read, override and validate; every problem named by its recipe path."""
    from difftk.registry import default_registry

    registry = registry or default_registry()
    path, source = Path(path), str(path)
    if not path.is_file():
        raise RecipeError([("", "no such recipe file")], source)
    data = parse_recipe_text(path, source)
    problems = apply_overrides(data, list(overrides or []))
    for section in data:
        if section not in (*SECTIONS, "data"):
            problems.append((section, f"unknown section [{section}] (an autoencoder recipe "
                                      "has [run], [data], [autoencoder] and [log])"))
    settings, found = validate_settings(data, SECTIONS, registry)
    problems += found
    dataset = None
    raw = data.get("data")
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        problems.append(("data.name", "the recipe needs a [data] section naming a data set"))
    else:
        try:
            entry = registry.get("datasets", raw["name"])
            dataset = entry.cls.model_validate({k: v for k, v in raw.items() if k != "name"})
        except UnknownComponentError as exc:
            problems.append(("data.name", str(exc)))
        except ValidationError as exc:
            problems += _errors(exc, "data", entry.cls)
    if problems:
        raise RecipeError(problems, source)
    return AutoencoderRecipe(settings["run"], dataset, settings["autoencoder"], settings["log"])
