"""difftk: compose diffusion training runs from named, pluggable parts.

Plugin authors import what they need from here: ``hookimpl`` and the family base
classes (``Weighting``, ``Schedule``, ...). The base classes load lazily so that
``import difftk`` stays cheap for the command line.
"""

from importlib import import_module

from difftk.hookspecs import hookimpl

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access.
_LAZY = {
    "Component": "difftk.component",
    "Schedule": "difftk.diffusion.schedule",
    "DiscreteSchedule": "difftk.diffusion.schedule",
    "SigmaSchedule": "difftk.diffusion.schedule",
    "Levels": "difftk.diffusion.levels",
    "Target": "difftk.diffusion.target",
    "Weighting": "difftk.diffusion.weighting",
    "NoiseSampler": "difftk.diffusion.noise_sampling",
    "Sampler": "difftk.diffusion.sampler",
    "Variance": "difftk.diffusion.variance",
    "Loss": "difftk.diffusion.loss",
    "Architecture": "difftk.nn.architecture",
    "Precision": "difftk.optim.precision",
    "Clipping": "difftk.optim.clipping",
    "Ema": "difftk.optim.ema",
    "Optimizer": "difftk.optim.optimizer",
    "LrSchedule": "difftk.optim.lr_schedule",
    "Dataset": "difftk.data.dataset",
    "Augmentation": "difftk.data.augment",
    "Logger": "difftk.logger",
    "Latents": "difftk.latents.latents",
    "LatentCodec": "difftk.latents.latents",
}

__all__ = ["hookimpl", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'difftk' has no attribute {name!r}")
