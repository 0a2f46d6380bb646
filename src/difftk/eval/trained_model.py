"""A trained model for sampling and evaluation, from a checkpoint or a weights file.

``difftk sample`` and ``difftk eval`` take either a checkpoint (its directory, its run
directory, or ``checkpoints/latest``: run/assemble.py) or the single safetensors file
``difftk ema`` writes. That file holds one set of weights (the post-hoc EMA, Karras et al.
2024) and, in its metadata, what is needed to rebuild the network around them: the run's
resolved recipe, the network's data spec, the data kind and the step. ``weights_file_metadata``
writes those fields; ``load_trained_model`` reads either form.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from difftk.errors import CheckpointError, DifftkError
from difftk.nn.architecture import DataSpec
from difftk.recipe import recipe_from_text
from difftk.run.assemble import Restored, assemble, restore, restore_codec
from difftk.run.checkpoint import nonfinite_tensors
from difftk.run.state_record import SpecRecord
from difftk.run.weights_file import refuse_oversized_file

RECIPE, SPEC, KIND, STEP = "difftk_recipe", "difftk_spec", "difftk_kind", "difftk_step"


def weights_file_metadata(run_dir: str | Path, step: int) -> dict[str, str]:
    """The fields that make a weights file averaged from ``run_dir`` loadable on its own:
    the run's recipe.toml, and the spec and data kind of its latest checkpoint (from the
    recipe's data set when the run has no checkpoint yet). Empty when the run directory
    holds no recipe.toml."""
    from difftk.run.checkpoint import resolve_checkpoint_dir

    recipe_file = Path(run_dir) / "recipe.toml"
    if not recipe_file.is_file():
        return {}
    recipe_toml = recipe_file.read_text()
    try:
        state = json.loads((resolve_checkpoint_dir(run_dir) / "state.json").read_text())
        spec, kind = state["spec"], state.get("kind", "image")
    except CheckpointError:
        from difftk.run.assemble import data_spec
        from difftk.run.training_data import training_data

        recipe = recipe_from_text(recipe_toml, source=str(recipe_file))
        data = training_data(recipe, torch.device("cpu")).data  # a latent run's latents
        s = data_spec(recipe, data)
        spec = {"shape": list(s.shape), "out_channels": s.out_channels,
                "num_classes": s.num_classes}
        kind = data.kind
    return {RECIPE: recipe_toml, SPEC: json.dumps(spec), KIND: kind, STEP: str(step)}


def _load_weights_file(path: Path, device: torch.device, use_ema: bool) -> Restored:
    if not use_ema:
        raise DifftkError(f"{path}: a weights file holds one set of weights (the post-hoc "
                          f"EMA); --no-ema needs a checkpoint directory")
    refuse_oversized_file(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: is not a readable safetensors file ({exc})") from None
    if RECIPE not in meta or SPEC not in meta:
        raise CheckpointError(f"{path}: records no recipe; write it with difftk ema from a "
                              f"run directory that holds recipe.toml")
    bad = nonfinite_tensors(tensors)
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} of {len(tensors)} tensors hold NaN or inf "
                              f"(e.g. {bad[0]}); refusing to use them")
    recipe = recipe_from_text(meta[RECIPE], source=f"{path} (recipe)")
    try:
        s = SpecRecord.model_validate(json.loads(meta[SPEC]))
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise CheckpointError(f"{path}: its recorded network spec is invalid "
                              f"({str(exc).splitlines()[-1].strip()})") from None
    spec = DataSpec(tuple(s.shape), s.out_channels, s.num_classes)
    asm = assemble(recipe, spec, device)
    try:
        asm.denoiser.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the recorded model ({exc})") from None
    asm.denoiser.eval()
    return Restored(recipe, asm.denoiser, spec, meta.get(KIND, "image"), int(meta.get(STEP, 0)),
                    restore_codec(recipe, device))


def load_trained_model(path: str | Path, device: torch.device, use_ema: bool = True
                       ) -> Restored:
    """The denoiser, recipe, spec, data kind and step of a checkpoint or a weights file."""
    path = Path(path)
    if path.is_file() and path.suffix == ".safetensors":
        return _load_weights_file(path, device, use_ema)
    return restore(path, device, use_ema=use_ema)


def with_guide(model: Restored, path: str | Path, device: torch.device,
               use_ema: bool = True) -> Restored:
    """``model`` guided by the denoiser at ``path`` (autoguidance, Karras et al. 2024a): a
    weaker model of the same data (a smaller network, an earlier checkpoint), which must draw
    the same shape in the same space, take the same labels, and read the noise level through
    the same schedule."""
    guide = load_trained_model(path, device, use_ema=use_ema)
    main_parts, guide_parts = model.recipe.parts, guide.recipe.parts
    checks = (
        (tuple(guide.spec.shape) == tuple(model.spec.shape),
         f"draws {tuple(guide.spec.shape)} samples and the model {tuple(model.spec.shape)}"),
        (guide.spec.num_classes == model.spec.num_classes,
         f"takes {guide.spec.num_classes or 'no'} classes and the model "
         f"{model.spec.num_classes or 'none'}"),
        (_same(guide_parts["schedule"], main_parts["schedule"]),
         f'has the schedule "{guide_parts["schedule"].name}" {guide_parts["schedule"].params()} '
         f'and the model "{main_parts["schedule"].name}" {main_parts["schedule"].params()}'),
        (_same(guide_parts["latents"], main_parts["latents"]),
         f'samples [latents] "{guide_parts["latents"].name}" and the model '
         f'"{main_parts["latents"].name}"'),
    )
    for ok, why in checks:
        if not ok:
            raise DifftkError(f"--guide {path}: the guiding model {why}; autoguidance needs a "
                              "weaker model of the same data, labels and schedule")
    return replace(model, guide=guide.denoiser)


def _same(a, b) -> bool:
    return a.name == b.name and a.params() == b.params()
