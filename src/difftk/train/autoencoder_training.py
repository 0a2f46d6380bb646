"""``difftk train-autoencoder``: fit a KL autoencoder to a data set's training split.

Adam on the per-image loss of kl_autoencoder.py with a seeded batch order and seeded
reparameterisation noise; scalars (total, reconstruction, KL, held-out reconstruction) go
to the recipe's loggers (TensorBoard by default) and the progress display of difftk train.
At the end: ``autoencoder.safetensors`` + ``autoencoder.json`` (shape, training settings,
final losses, the latents' mean and std on the training split) and a grid of held-out
images over their reconstructions, in runs/<name>/.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from difftk.errors import DataError, DifftkError
from difftk.latents.autoencoder_files import save_autoencoder
from difftk.latents.autoencoder_recipe import AutoencoderRecipe
from difftk.latents.encoded_data import encode_split
from difftk.latents.kl_autoencoder import AutoencoderShape, KLAutoencoder

WEIGHTS_NAME = "autoencoder.safetensors"


@dataclass
class AutoencoderRun:
    weights: Path
    info: dict
    seconds: float


@torch.no_grad()
def heldout_reconstruction(model: KLAutoencoder, x: torch.Tensor, device, batch: int = 256
                           ) -> float:
    """Mean squared error per pixel of decode(posterior mean) on x."""
    total, count = 0.0, 0
    for i in range(0, x.shape[0], batch):
        part = x[i:i + batch].to(device).float()
        mean, _ = model.posterior(part)
        total += float((model.decode(mean) - part).square().sum())
        count += part.numel()
    return total / count


def _check_images(recipe: AutoencoderRecipe, data) -> None:
    if data.kind != "image" or data.train.dim() != 4:
        raise DataError(f'train-autoencoder needs images, and "{recipe.data.name}" holds '
                        f"{data.kind}s of shape {list(data.shape)}")
    f = recipe.autoencoder.downsample
    if data.shape[1] % f or data.shape[2] % f:
        raise DataError(f"autoencoder.downsample = {f} does not divide the "
                        f"{data.shape[1]}x{data.shape[2]} images")


def train_autoencoder(recipe: AutoencoderRecipe, device: torch.device,
                      progress: bool = True) -> AutoencoderRun:
    from difftk.data.pixel_scaling import pixel_scaling
    from difftk.diffusion.pixel_range import PixelRange
    from difftk.eval.figures import image_grid, save_png
    from difftk.logger import RunInfo
    from difftk.recipe import logger_parts
    from difftk.registry import default_registry
    from difftk.run.run_logger import RunLogger
    from difftk.train.progress import training_progress

    a, run_dir = recipe.autoencoder, recipe.run_dir
    weights = run_dir / WEIGHTS_NAME
    if weights.exists():
        raise DifftkError(f"{run_dir} already holds an autoencoder; choose another name with "
                          f"--set run.name=NAME")
    data = recipe.data.load()
    _check_images(recipe, data)
    shape = AutoencoderShape(data.shape[0], a.width, a.latent_channels, a.downsample)
    torch.manual_seed(recipe.run.seed)
    model = KLAutoencoder(shape).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=a.lr)
    order_gen = torch.Generator().manual_seed(recipe.run.seed + 1)
    noise_gen = torch.Generator(device).manual_seed(recipe.run.seed + 2)
    loggers = [p for p in logger_parts(recipe.log, default_registry())[0]
               if recipe.log.tensorboard or p.name != "tensorboard"]
    logger = RunLogger(loggers, RunInfo(run_dir, recipe.run.name, recipe.flat()), True)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "recipe.toml").write_text(recipe.to_toml())
    n, batch = data.train.shape[0], min(a.batch_size, data.train.shape[0])
    perm, cursor = torch.randperm(n, generator=order_gen), 0
    start = time.perf_counter()
    sums = torch.zeros(3)
    with training_progress(a.steps, 0, enabled=progress, label="autoencoder",
                           every=recipe.log.every, batch_size=batch) as bar:
        last = float("nan")
        for step in range(1, a.steps + 1):
            if cursor + batch > n:  # a fresh permutation each epoch; the last partial batch is dropped
                perm, cursor = torch.randperm(n, generator=order_gen), 0
            x = data.train[perm[cursor:cursor + batch]].to(device).float()
            cursor += batch
            loss, rec, kl = model.loss(x, a.beta, noise_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sums += torch.stack([loss.detach(), rec.detach(), kl.detach()]).cpu()
            if step % recipe.log.every == 0 or step == a.steps:
                k = recipe.log.every if step % recipe.log.every == 0 else step % recipe.log.every
                mean = (sums / k).tolist()
                sums.zero_()
                last = mean[0]
                logger.scalar("loss/train", mean[0], step)
                logger.scalar("loss/reconstruction", mean[1], step)
                logger.scalar("loss/kl", mean[2], step)
            if recipe.log.val_every and step % recipe.log.val_every == 0:
                model.eval()
                logger.scalar("loss/heldout_mse_per_pixel",
                              heldout_reconstruction(model, data.heldout, device), step)
                model.train()
            bar.advance(step, last)
    seconds = time.perf_counter() - start
    model.eval()
    info = _summary(recipe, model, data, device, seconds)
    logger.scalar("loss/heldout_mse_per_pixel", info["heldout_mse_per_pixel"], a.steps)
    with torch.no_grad():
        shown = data.heldout[:32].to(device).float()
        recon = model.decode(model.posterior(shown)[0])
        grid = image_grid(torch.cat([shown, recon]).cpu(),
                          pixel_range=PixelRange.from_scaling(*pixel_scaling(
                              recipe.data, shown.shape[1])))
    logger.image("reconstructions", grid, a.steps)
    save_png(grid, run_dir / "reconstructions.png")
    logger.close()
    save_autoencoder(weights, model, info)
    return AutoencoderRun(weights, info, seconds)


def _summary(recipe: AutoencoderRecipe, model, data, device, seconds: float) -> dict:
    """What autoencoder.json records besides the shape."""
    with torch.no_grad():
        latents = encode_split(_MeanEncoder(model), data.train, device)
    return {"pixel_shape": list(data.shape), "latent_shape": list(latents.shape[1:]),
            "data": recipe.to_dict()["data"], "beta": recipe.autoencoder.beta,
            "steps": recipe.autoencoder.steps, "batch_size": recipe.autoencoder.batch_size,
            "lr": recipe.autoencoder.lr, "seed": recipe.run.seed,
            "train_seconds": round(seconds, 2),
            "heldout_mse_per_pixel": heldout_reconstruction(model, data.heldout, device),
            "latent_mean": float(latents.mean()), "latent_std": float(latents.std())}


class _MeanEncoder:
    """encode = the posterior mean, for encode_split."""

    def __init__(self, model: KLAutoencoder):
        self.model = model

    def encode(self, x):
        return self.model.posterior(x)[0]
