"""From a recipe to the denoiser it describes: for a new run, or rebuilt from a checkpoint.

``assemble`` builds the network and binds the recipe's parts around it; ``restore`` does
the same from a checkpoint's recorded recipe and data shape and loads its weights (for
sampling and evaluation).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

import torch

from difftk.data.dataset import DataBundle
from difftk.data.pixel_scaling import pixel_scaling
from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.objective import Objective
from difftk.diffusion.pixel_range import PixelRange
from difftk.errors import CheckpointError, DataError
from difftk.latents.latents import LatentCodec, decode_fp32
from difftk.nn.architecture import DataSpec
from difftk.optim.ema import too_young
from difftk.recipe import Recipe, recipe_from_text
from difftk.run.checkpoint import load_intact, require_finite


def resolve_sigma_data(recipe: Recipe, sigma_data: float) -> Recipe:
    """Replace every ``sigma_data = "data"`` parameter by the measured value."""
    updates = {}
    for section, part in recipe.parts.items():
        if getattr(part, "sigma_data", None) == "data":
            updates[section] = part.model_copy(update={"sigma_data": round(sigma_data, 5)})
    if updates and not round(sigma_data, 5) > 0:  # constant data: every 1/sigma_data is inf
        raise DataError(f'{", ".join(updates)}: sigma_data = "data" needs data that varies, and '
                        f"the training data's standard deviation is {sigma_data:.3g}; set "
                        "sigma_data to a number")
    return recipe.with_parts(**updates) if updates else recipe


def data_spec(recipe: Recipe, data: DataBundle) -> DataSpec:
    """What the network takes and emits; ``train.class_conditional`` takes the class count
    from the data set, so a recipe never states a number that could disagree with it."""
    channels = data.shape[0]
    out = channels * (2 if recipe.parts["variance"].learned else 1)
    num_classes = 0
    if recipe.train.class_conditional:
        if not data.num_classes or data.train_labels is None:
            raise DataError(f'train.class_conditional needs a data set with class labels, and '
                            f'"{recipe.parts["data"].name}" has none')
        num_classes = data.num_classes
    return DataSpec(shape=data.shape, out_channels=out, num_classes=num_classes)


@dataclass
class Assembly:
    recipe: Recipe
    spec: DataSpec
    denoiser: Denoiser
    objective: Objective


# Bytes per parameter byte that training holds: weights, gradients, Adam's two moments, EMA.
TRAINING_COPIES = 5


def available_memory(device: torch.device) -> int | None:
    """Bytes the device can still give (CPU: MemAvailable of /proc/meminfo), or None."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def refuse_oversized(model_part, spec: DataSpec, device: torch.device, copies: int) -> None:
    """Build the network on the meta device (no memory) and refuse, with the figure, one
    whose weights and training state cannot fit where it is going."""
    try:
        with torch.device("meta"):
            probe = model_part.build(spec)
    except Exception:  # a network that cannot be built without data (a plugin's): not probed
        return
    weights = sum(p.numel() * p.element_size() for p in probe.parameters())
    need, have = weights * copies, available_memory(device)
    if have is not None and need > have:
        from difftk.errors import DifftkError

        raise DifftkError(
            f"model: the {model_part.name} network has {weights / 4:,.0f} parameters "
            f"({weights / 2**30:.1f} GiB of weights; {need / 2**30:.1f} GiB with "
            f"{'gradients, optimizer moments and EMA' if copies > 1 else 'nothing else'}), "
            f"more than the {have / 2**30:.1f} GiB {device.type} memory available")


def data_pixel_range(recipe: Recipe, channels: int) -> PixelRange:
    """Where the recipe's image pixels lie once scaled by data.mean and data.std
    (diffusion/pixel_range.py): the space samples are decoded to and metrics read."""
    return PixelRange.from_scaling(*pixel_scaling(recipe.parts["data"], channels))


def pixel_range_of(recipe: Recipe, spec: DataSpec) -> PixelRange | None:
    """The pixel range in the network's own space: the data's for images diffused as pixels,
    None for vectors and for [latents] other than the pixels."""
    if len(spec.shape) != 3 or not recipe.parts["latents"].in_pixel_space:
        return None
    return data_pixel_range(recipe, spec.shape[0])


def assemble(recipe: Recipe, spec: DataSpec, device: torch.device,
             training: bool = False) -> Assembly:
    """Build the network and bind the recipe's parts around it; for ``training``, a network
    whose weights, gradients, optimizer moments and EMA cannot fit is refused before
    allocation."""
    p = recipe.parts
    torch.manual_seed(recipe.run.seed)  # network initialisation is part of the run's seed
    # The [augment] pipeline's label count is the network's augment_dim (data/augment.py).
    spec = replace(spec, augment_dim=p["augment"].label_dim())
    if training:  # the probe's first meta build costs a second of start-up; sampling and
        # evaluation rebuild a network that trained on this machine class
        refuse_oversized(p["model"], spec, device, TRAINING_COPIES)
        torch.manual_seed(recipe.run.seed)
    net = p["model"].build(spec).to(device)
    uncertainty = p["weight"].uncertainty_network()  # EDM2's learned weighting, or None
    denoiser = Denoiser(net, p["schedule"], p["target"], p["variance"],
                        None if uncertainty is None else uncertainty.to(device),
                        pixel_range_of(recipe, spec))
    objective = Objective.for_denoiser(denoiser, p["weight"], p["noise_sampling"], p["loss"])
    return Assembly(recipe, spec, denoiser, objective)


@dataclass
class Restored:
    recipe: Recipe
    denoiser: torch.nn.Module
    spec: DataSpec  # the network's: in latent space when the recipe has [latents]
    kind: str  # of the pixels that samples decode to
    step: int
    codec: LatentCodec | None = None  # the recipe's [latents], rebuilt from its config
    guide: torch.nn.Module | None = None  # autoguidance's weaker denoiser (with_guide)

    @property
    def pixel_range(self) -> PixelRange:
        """Where decoded image pixels lie (the data's scaling)."""
        return data_pixel_range(self.recipe, self.pixel_channels)

    @property
    def pixel_channels(self) -> int:
        """Channels of the decoded images: the codec's pixel shape, else the network's."""
        if self.codec is not None and not self.codec.identity and self.codec.pixel_shape:
            return self.codec.pixel_shape[0]
        return self.spec.shape[0] if len(self.spec.shape) == 3 else 1

    def to_pixels(self, samples: torch.Tensor) -> torch.Tensor:
        """Samples drawn by the denoiser, decoded to pixels (fp32, seed 001 §12.4)."""
        return samples if self.codec is None else decode_fp32(self.codec, samples)


def restore_codec(recipe: Recipe, device: torch.device) -> LatentCodec:
    """The codec of the recipe's [latents] (the recorded autoencoder weights, or the
    transform fitted again on the recipe's data set), in eval mode on ``device``."""
    codec = recipe.parts["latents"].build(lambda: recipe.parts["data"].load())
    return codec.to(device).eval()


def restore(path, device: torch.device, use_ema: bool = True) -> Restored:
    """The trained denoiser of a checkpoint directory (its EMA weights by default), in eval mode."""
    group = "ema" if use_ema else "model"
    ck = load_intact(path, groups=("ema", "model"))  # no optimizer; damaged ones are skipped
    recipe = recipe_from_text(ck.recipe_toml, source=str(ck.path / "recipe.toml"))
    why = too_young(recipe.parts["ema"], ck.step, recipe.train.batch_size) if use_ema else None
    if why is not None:
        print(f"difftk: {why}", file=sys.stderr)
        group = "model"
    require_finite(ck, group)
    s = ck.state["spec"]
    spec = DataSpec(tuple(s["shape"]), s["out_channels"], s["num_classes"])
    asm = assemble(recipe, spec, device)
    try:
        asm.denoiser.load_state_dict(ck.tensors[group])
    except RuntimeError as exc:
        raise CheckpointError(f"{ck.path}: weights do not fit the recorded model ({exc})") from None
    asm.denoiser.eval()
    return Restored(recipe, asm.denoiser, spec, ck.state.get("kind", "image"), ck.step,
                    restore_codec(recipe, device))
