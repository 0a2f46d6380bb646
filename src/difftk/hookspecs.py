"""One pluggy hookspec per family: ``register_<family>(register)``.

A hook implementation calls ``register(ComponentClass)`` once for each component it
provides. The host owns provenance, collision policy and validation. Built-in
components are registered through these same hooks.
"""

import pluggy

hookspec = pluggy.HookspecMarker("difftk")
hookimpl = pluggy.HookimplMarker("difftk")


@hookspec
def register_schedules(register):
    """Register forward processes t -> (alpha, sigma): subclasses of ``difftk.Schedule``."""


@hookspec
def register_targets(register):
    """Register prediction targets and preconditionings: subclasses of ``difftk.Target``."""


@hookspec
def register_weights(register):
    """Register loss weightings w(SNR): subclasses of ``difftk.Weighting``."""


@hookspec
def register_noise_sampling(register):
    """Register training noise-level distributions: subclasses of ``difftk.NoiseSampler``."""


@hookspec
def register_samplers(register):
    """Register generation algorithms: subclasses of ``difftk.Sampler``."""


@hookspec
def register_architectures(register):
    """Register networks f_theta: subclasses of ``difftk.Architecture``."""


@hookspec
def register_precision(register):
    """Register numeric policies: subclasses of ``difftk.Precision``."""


@hookspec
def register_losses(register):
    """Register per-sample training losses: subclasses of ``difftk.Loss``."""


@hookspec
def register_variance(register):
    """Register reverse-process variances: subclasses of ``difftk.Variance``."""


@hookspec
def register_clipping(register):
    """Register gradient clipping rules: subclasses of ``difftk.Clipping``."""


@hookspec
def register_ema(register):
    """Register weight averages: subclasses of ``difftk.Ema``."""


@hookspec
def register_datasets(register):
    """Register data sets: subclasses of ``difftk.Dataset``."""


@hookspec
def register_augmentations(register):
    """Register training-image augmentations with labels for the network: subclasses of
    ``difftk.Augmentation``."""


@hookspec
def register_optimizers(register):
    """Register optimizers: subclasses of ``difftk.Optimizer``."""


@hookspec
def register_lr_schedules(register):
    """Register learning-rate schedules: subclasses of ``difftk.LrSchedule``."""


@hookspec
def register_loggers(register):
    """Register logging backends (listed in ``log.backends``): subclasses of ``difftk.Logger``."""


@hookspec
def register_latents(register):
    """Register the spaces diffusion runs in (pixels, transforms): subclasses of ``difftk.Latents``."""
