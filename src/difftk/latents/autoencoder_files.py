"""An autoencoder on disk: weights as safetensors, its shape as a small JSON file beside it.

``difftk train-autoencoder`` writes ``autoencoder.safetensors`` and ``autoencoder.json``
(the shape, how it was trained, the latents' statistics). Any safetensors file whose keys
and shapes are KLAutoencoder's (``encoder.*``, ``decoder.*``) loads the same way; its shape
comes from the JSON file beside it or, without one, from the recipe's [latents] fields.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from difftk.errors import DataError
from difftk.latents.kl_autoencoder import AutoencoderShape, KLAutoencoder


def config_path(weights: Path) -> Path:
    """The JSON file beside a weights file: autoencoder.safetensors -> autoencoder.json."""
    return weights.with_suffix(".json")


def save_autoencoder(path: Path, model: KLAutoencoder, info: dict) -> Path:
    """Weights (atomically: temp file, then rename) and the JSON of shape + ``info``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp), metadata={"difftk_autoencoder": json.dumps(model.shape.to_dict())})
    os.replace(tmp, path)
    text = json.dumps({**model.shape.to_dict(), **info}, indent=1)
    config_path(path).write_text(text + "\n")
    return path


def read_shape(weights: Path, fallback: dict) -> AutoencoderShape:
    """The shape from the JSON beside ``weights``, else from ``fallback`` (recipe fields)."""
    config = config_path(weights)
    if config.is_file():
        try:
            data = json.loads(config.read_text())
            return AutoencoderShape(**{k: int(data[k]) for k in
                                       ("channels", "width", "latent_channels", "downsample")})
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{config}: is not an autoencoder configuration ({exc})") from None
    missing = [k for k in ("width", "latent_channels", "downsample") if fallback.get(k) is None]
    if missing:
        raise DataError(f"{weights}: there is no {config.name} beside it, so set "
                        f"{', '.join('latents.' + k for k in missing)} in the recipe")
    return AutoencoderShape(**{k: int(v) for k, v in fallback.items()})


def load_autoencoder(weights: Path, fallback: dict) -> KLAutoencoder:
    """The autoencoder of ``weights``; a missing file or one of another layout is one
    sentence."""
    if not weights.is_file():
        raise DataError(f"{weights}: no such autoencoder weights file (train one with "
                        "difftk train-autoencoder RECIPE)")
    shape = read_shape(weights, fallback)
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(f"{weights}: is not a readable safetensors file ({exc})") from None
    model = KLAutoencoder(shape)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors)
                   if tuple(expected[k].shape) != tuple(tensors[k].shape))
    if missing or extra or wrong:
        what = (f"lacks {missing[0]}" if missing else f"has an unknown key {extra[0]}"
                if extra else f"{wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}, not "
                f"{tuple(expected[wrong[0]].shape)}")
        raise DataError(f"{weights}: does not have the layout of a KL autoencoder with "
                        f"{shape.to_dict()} ({what})")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.eval().requires_grad_(False)


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


