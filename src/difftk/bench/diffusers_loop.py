"""diffusers' way to train the same kind of U-Net: ``UNet2DModel`` + ``DDPMScheduler``.

The loop of diffusers' ``train_unconditional.py`` example: timesteps uniform in 0..T-1,
``scheduler.add_noise``, ``model(x_t, t).sample`` regressed on the noise with a mean squared
error, one Adam step. The network is the ``UNet2DModel`` that holds difftk's ``unet``
layout (interop/unet_layout.py, the config ``difftk export`` writes), so both train the
same architecture with the same parameter count; other architectures have no diffusers
layout and are reported as such. The recipe's autocast dtype, ``model.channels_last`` and
``train.compile`` apply to both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from difftk.interop.errors import InteropError
from difftk.interop.optional import DIFFUSERS
from difftk.nn.auto_speed import chosen, maybe_compile


def diffusers_layout(difftk_loop) -> tuple[dict | None, str]:
    """(UNet2DModel config, "") for a ``unet`` recipe diffusers can express; else (None,
    why not)."""
    part = difftk_loop.recipe.parts["model"]
    if part.name != "unet":
        return None, f'no diffusers layout for the "{part.name}" architecture'
    if not DIFFUSERS.installed():
        return None, 'diffusers is not installed (pip install "difftk[bench]")'
    from difftk.interop.unet_layout import diffusers_config

    try:
        config = diffusers_config(part, difftk_loop.spec, difftk_loop.model.net)
    except InteropError as exc:
        return None, f"no diffusers layout: {exc}"
    return {k: v for k, v in config.items() if not k.startswith("_")}, ""


class DiffusersLoop:
    name = "diffusers"

    def __init__(self, difftk_loop, config: dict, data_train: torch.Tensor,
                 labels: torch.Tensor | None):
        from diffusers import DDPMScheduler, UNet2DModel

        self.device, self.batch = difftk_loop.device, difftk_loop.batch
        torch.manual_seed(difftk_loop.recipe.run.seed)
        self.net = UNet2DModel(**config).to(self.device).train()
        if chosen(getattr(difftk_loop.recipe.parts["model"], "channels_last", False),
                  "channels_last", self.device):
            self.net = self.net.to(memory_format=torch.channels_last)
        self.forward = maybe_compile(self.net, difftk_loop.recipe.train.compile, self.device)
        self.parameters = sum(p.numel() for p in self.net.parameters())
        self.scheduler = DDPMScheduler(num_train_timesteps=1000)
        self.scheduler.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device)
        self.channels = difftk_loop.spec.shape[0]
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=difftk_loop.lr)
        self.autocast_dtype = difftk_loop.precision.autocast_dtype(self.device)
        self.x = data_train.to(self.device)
        self.labels = None if labels is None or not config.get("num_class_embeds") \
            else labels.to(self.device)
        self.generator = torch.Generator(self.device).manual_seed(0)

    def step(self) -> None:
        b, dev, gen = self.batch, self.device, self.generator
        idx = torch.randint(0, self.x.shape[0], (b,), device=dev, generator=gen)
        x0 = self.x[idx]
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), device=dev,
                          generator=gen)
        eps = torch.randn(x0.shape, device=dev, generator=gen)
        x_t = self.scheduler.add_noise(x0, eps, t)
        labels = None if self.labels is None else self.labels[idx]
        with torch.autocast(dev.type, dtype=self.autocast_dtype,
                            enabled=self.autocast_dtype is not None):
            out = self.forward(x_t, t, class_labels=labels).sample
        loss = F.mse_loss(out[:, :self.channels].float(), eps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
