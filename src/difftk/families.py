"""The families of components: recipe section, base class, and the recipe's default part.

This table is data, not behaviour: the core never branches on a concrete name.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module


@dataclass(frozen=True)
class Family:
    name: str  # plural, as in the hook register_<name>
    section: str  # recipe section
    base: str  # "module:Class" of the base class every member subclasses
    default: str | None  # part used when the recipe has no such section
    noun: str  # "a weighting", for sentences
    names_field: str = "name"  # the section's field naming the part ("backends": a list of them)

    def base_class(self) -> type:
        module, cls = self.base.split(":")
        return getattr(import_module(module), cls)


FAMILIES: tuple[Family, ...] = (
    Family("datasets", "data", "difftk.data.dataset:Dataset", None, "data set"),
    Family("augmentations", "augment", "difftk.data.augment:Augmentation", "none",
           "augmentation pipeline"),
    Family("architectures", "model", "difftk.nn.architecture:Architecture", None, "architecture"),
    Family("schedules", "schedule", "difftk.diffusion.schedule:Schedule", None, "schedule"),
    Family("targets", "target", "difftk.diffusion.target:Target", None, "target"),
    Family("weights", "weight", "difftk.diffusion.weighting:Weighting", "uniform", "weighting"),
    Family("noise_sampling", "noise_sampling", "difftk.diffusion.noise_sampling:NoiseSampler",
           None, "noise-level distribution"),
    Family("samplers", "sampler", "difftk.diffusion.sampler:Sampler", None, "sampler"),
    Family("variance", "variance", "difftk.diffusion.variance:Variance", "fixed_small",
           "variance"),
    Family("losses", "loss", "difftk.diffusion.loss:Loss", "mse", "loss"),
    Family("precision", "precision", "difftk.optim.precision:Precision", "auto",
           "precision policy"),
    Family("clipping", "clipping", "difftk.optim.clipping:Clipping", "none", "clipping rule"),
    Family("ema", "ema", "difftk.optim.ema:Ema", "ema", "EMA"),
    Family("optimizers", "optimizer", "difftk.optim.optimizer:Optimizer", "adam", "optimizer"),
    Family("lr_schedules", "lr_schedule", "difftk.optim.lr_schedule:LrSchedule", "constant",
           "learning-rate schedule"),
    Family("latents", "latents", "difftk.latents.latents:Latents", "identity", "latent space"),
    Family("loggers", "log", "difftk.logger:Logger", "tensorboard", "logger", "backends"),
)

BY_NAME = {f.name: f for f in FAMILIES}
# Sections that hold one part, named by ``name``.
BY_SECTION = {f.section: f for f in FAMILIES if f.names_field == "name"}
