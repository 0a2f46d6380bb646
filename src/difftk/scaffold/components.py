"""The working component each ``difftk new-plugin --family F`` package starts from.

One short, sourced formula per family, written against difftk's public base classes, so
the package passes difftk.testing's contract checks as generated and shows the method a
family asks for. Each entry: (what the package adds, a str.format template of the module:
literal braces doubled).
"""

from __future__ import annotations

HEADER = '''"""{class_name}: {what} for difftk."""

'''

HOOK = '''

@hookimpl
def register_{family}(register):
    register({class_name})
'''

ARCHITECTURES = '''import math

import torch
from pydantic import Field
from torch import nn

import difftk
from difftk import hookimpl
from difftk.nn.architecture import ArchitectureError


class {class_name}Net(nn.Module):
    """conv -> depth x (GroupNorm, SiLU, conv, + noise embedding) -> conv, for images."""

    def __init__(self, channels: int, out_channels: int, num_classes: int, width: int, depth: int):
        super().__init__()
        half = width // 2
        # Sinusoidal features of the time input (Ho et al. 2020), then an MLP.
        self.register_buffer("freqs", torch.exp(-math.log(1e4) * torch.arange(half) / half),
                             persistent=False)
        self.embed = nn.Sequential(nn.Linear(2 * half, width), nn.SiLU(), nn.Linear(width, width))
        # One row per class plus the null label (index num_classes) for unconditional calls.
        self.labels = nn.Embedding(num_classes + 1, width) if num_classes else None
        self.null = num_classes
        self.inp = nn.Conv2d(channels, width, 3, padding=1)
        self.norms = nn.ModuleList(nn.GroupNorm(8, width) for _ in range(depth))
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(depth))
        self.out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x, time, labels=None):
        angles = time.float()[:, None] * self.freqs[None]
        emb = self.embed(torch.cat([torch.cos(angles), torch.sin(angles)], dim=1))
        if self.labels is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), self.null, dtype=torch.long, device=x.device)
            emb = emb + self.labels(labels)
        h = self.inp(x)
        for norm, conv in zip(self.norms, self.convs):
            h = h + conv(nn.functional.silu(norm(h))) + emb[:, :, None, None]
        return self.out(h)


class {class_name}(difftk.Architecture):
    """A small residual conv net with an added sinusoidal noise embedding, for images."""

    name = "{component}"
    width: int = Field(32, ge=8, multiple_of=8, description="channels of the hidden layers")
    depth: int = Field(2, ge=1, description="residual conv layers")

    def build(self, spec):
        # spec: the data's shape (C, H, W), out_channels (2C with a learned variance) and
        # num_classes (0: unconditional). Refuse other data with one sentence.
        if len(spec.shape) != 3:
            raise ArchitectureError(f"{component} takes images (C, H, W), not shape {{spec.shape}}")
        return {class_name}Net(spec.shape[0], spec.out_channels, spec.num_classes,
                               self.width, self.depth)
'''

SCHEDULES = '''import torch
from pydantic import Field

import difftk
from difftk import hookimpl


class {class_name}(difftk.DiscreteSchedule):
    """Betas linear in sqrt(beta) (the "scaled linear" schedule of Rombach et al. 2022)."""

    name = "{component}"
    beta_start: float = Field(0.00085, gt=0, lt=1, description="beta_1")
    beta_end: float = Field(0.012, gt=0, lt=1, description="beta_T")

    def base_betas(self, T, scale):
        # beta_t = (sqrt(b_1) + (t - 1) / (T - 1) (sqrt(b_T) - sqrt(b_1)))^2, t = 1..T
        ramp = torch.linspace(0.0, 1.0, T, dtype=torch.float64)
        lo, hi = (self.beta_start * scale) ** 0.5, (self.beta_end * scale) ** 0.5
        return (lo + ramp * (hi - lo)) ** 2
'''

TARGETS = '''import torch

import difftk
from difftk import hookimpl


class {class_name}(difftk.Target):
    """The flow velocity eps - x0 (Lipman et al. 2023; Liu et al. 2023) as the target."""

    name = "{component}"

    def coefficients(self, levels):
        # target = a x0 + b eps with (a, b) = (-1, 1); difftk derives x0, eps, v from (a, b).
        return -torch.ones_like(levels.alpha), torch.ones_like(levels.alpha)
'''

NOISE_SAMPLING = '''import torch
from pydantic import Field, model_validator

import difftk
from difftk import hookimpl


class {class_name}(difftk.NoiseSampler):
    """logSNR uniform on [log_snr_min, log_snr_max] (Kingma et al. 2021, uniform in logSNR)."""

    name = "{component}"
    log_snr_min: float = Field(-10.0, description="lowest logSNR drawn (most noise)")
    log_snr_max: float = Field(10.0, description="highest logSNR drawn (least noise)")

    @model_validator(mode="after")
    def _ordered(self):
        if self.log_snr_min >= self.log_snr_max:
            raise ValueError("log_snr_min must be below log_snr_max")
        return self

    def draw(self, n, schedule, generator, device):
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        log_snr = self.log_snr_min + (self.log_snr_max - self.log_snr_min) * u
        # EDM sigma = sigma / alpha = exp(-logSNR / 2); every schedule maps it to its levels.
        levels = schedule.levels_from_sigma_edm(torch.exp(-0.5 * log_snr))
        return levels.to(device), log_snr

    def log_snr_density(self, log_snr, schedule):
        inside = (log_snr >= self.log_snr_min) & (log_snr <= self.log_snr_max)
        return inside.double() / (self.log_snr_max - self.log_snr_min)

    def log_snr_support(self, schedule):
        return self.log_snr_min, self.log_snr_max
'''

SAMPLERS = '''import torch

import difftk
from difftk import hookimpl
from difftk.diffusion.sampler import finite_sigmas, report


class {class_name}(difftk.Sampler):
    """Euler steps of the probability-flow ODE in EDM's coordinates (Karras et al. 2022, Alg. 1)."""

    name = "{component}"

    def solve(self, model, noise, grid, generator, callback=None):
        # x = x_t / alpha and sigma = EDM sigma: dx/dsigma = (x - D(x; sigma)) / sigma. The
        # model takes x_t at one level of the schedule (alpha, sigma) and returns its x0 estimate.
        sigmas = finite_sigmas(grid).tolist()
        times = None if grid.t is None else grid.t.tolist()
        x = noise.to(torch.float64) * sigmas[0]
        for i in range(len(sigmas) - 1):
            s, s_next = sigmas[i], sigmas[i + 1]
            level = grid.level_at_sigma_edm(s, None if times is None else times[i])
            x_t = level.alpha * x
            denoised = model(x_t, level).x0.to(torch.float64)
            report(callback, i, x_t, level, denoised)
            x = x + (s_next - s) * (x - denoised) / s
        return x  # at sigma = 0, x is the sample x0
'''

VARIANCE = '''import torch
from pydantic import Field

import difftk
from difftk import hookimpl


class {class_name}(difftk.Variance):
    """A fixed log-variance between beta_tilde and beta (Nichol & Dhariwal 2021, eq. 15, fixed v)."""

    name = "{component}"
    fraction: float = Field(0.5, ge=0, le=1, description="0: beta_tilde (fixed_small), 1: beta "
                            "(fixed_large)")

    def log_variance(self, beta, beta_tilde, extra):
        # log sigma^2 = v log beta + (1 - v) log beta_tilde; beta_tilde is 0 at t = 1, so clamp.
        return (self.fraction * torch.log(beta)
                + (1 - self.fraction) * torch.log(beta_tilde.clamp(min=1e-20)))
'''

LOSSES = '''import torch
from pydantic import Field

import difftk
from difftk import hookimpl


class {class_name}(difftk.Loss):
    """Pseudo-Huber loss sqrt(d^2 + c^2) - c on the target (Song & Dhariwal 2024), per pixel mean."""

    name = "{component}"
    c: float = Field(0.03, gt=0, description="where the loss turns from quadratic to linear")

    def __call__(self, inputs):
        d = inputs.pred - inputs.target
        per_pixel = torch.sqrt(d.square() + self.c**2) - self.c
        return inputs.weight * per_pixel.flatten(1).mean(1)  # one value per sample
'''

PRECISION = '''import torch
from pydantic import Field

import difftk
from difftk import hookimpl


class {class_name}(difftk.Precision):
    """bfloat16 autocast on CUDA (no loss scaling needed), fp32 everywhere else."""

    name = "{component}"
    allow_tf32: bool = Field(True, description="TF32 matmuls on CUDA for what stays fp32")

    def autocast_dtype(self, device):
        return torch.bfloat16 if device.type == "cuda" else None

    def prepare(self, device, model):
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = self.allow_tf32
'''

CLIPPING = '''import torch
from pydantic import Field

import difftk
from difftk import hookimpl
from difftk.optim.clipping import global_grad_norm


class {class_name}(difftk.Clipping):
    """Clamp every gradient element to [-max_value, max_value] (value clipping)."""

    name = "{component}"
    max_value: float = Field(1.0, gt=0, description="largest gradient element kept")

    def clip(self, params):
        params = list(params)
        before = global_grad_norm(params)
        for p in params:
            if p.grad is not None:
                p.grad.clamp_(-self.max_value, self.max_value)
        return before, global_grad_norm(params)  # the norms before and after, as reported
'''

EMA = '''from pydantic import Field

import difftk
from difftk import hookimpl


class {class_name}(difftk.Ema):
    """EMA with warm-up: beta = min(beta_max, (1 + step) / (10 + step)) (TensorFlow's num_updates)."""

    name = "{component}"
    beta_max: float = Field(0.9999, ge=0, le=1, description="the decay once warmed up")

    def decay(self, step, batch_size):
        return min(self.beta_max, (1 + step) / (10 + step))
'''

OPTIMIZERS = '''import torch
from pydantic import Field

import difftk
from difftk import hookimpl


class {class_name}(difftk.Optimizer):
    """SGD with Nesterov momentum (Sutskever et al. 2013)."""

    name = "{component}"
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum coefficient")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty added to the gradient")

    def build(self, params):
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, nesterov=True,
                               weight_decay=self.weight_decay)
'''

DATASETS = '''import math

import torch
from pydantic import Field

import difftk
from difftk import hookimpl
from difftk.data.dataset import DataBundle


class {class_name}(difftk.Dataset):
    """Points on a noisy ring of radius 1 in 2-D, drawn in memory (a vector data set)."""

    name = "{component}"
    n: int = Field(10000, ge=10, description="training points")
    heldout: int = Field(2000, ge=1, description="held-out points")
    noise: float = Field(0.05, ge=0, description="std of the radial noise")
    seed: int = Field(0, description="seed of the points")

    def load(self):
        # A missing file or download belongs in a one-sentence difftk.errors.DataError.
        g = torch.Generator().manual_seed(self.seed)
        total = self.n + self.heldout
        angle = 2 * math.pi * torch.rand(total, generator=g)
        radius = 1 + self.noise * torch.randn(total, generator=g)
        x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
        return DataBundle(train=x[: self.n], heldout=x[self.n:], kind="vector")
'''

LR_SCHEDULES = '''import math

from pydantic import Field

import difftk
from difftk import hookimpl


class {class_name}(difftk.LrSchedule):
    """Linear warm-up, then exponential decay by ``gamma`` per 1,000 steps (a smooth StepLR)."""

    name = "{component}"
    warmup_steps: int = Field(100, ge=0, description="linear warm-up length in steps")
    gamma: float = Field(0.5, gt=0, le=1, description="factor per 1,000 steps after warm-up")

    def factor(self, clock) -> float:
        # A pure function of the step: a resumed run continues the same curve.
        if self.warmup_steps and clock.step < self.warmup_steps:
            return (clock.step + 1) / self.warmup_steps
        return math.pow(self.gamma, (clock.step - self.warmup_steps) / 1000)
'''

LOGGERS = '''from pydantic import Field

import difftk
from difftk import hookimpl
from difftk.logger import LogWriter


class {class_name}Writer(LogWriter):
    """Scalars as tab-separated step, tag, value lines; other records are dropped."""

    def __init__(self, path):
        self.file = open(path, "a", buffering=1, encoding="utf-8")

    def scalar(self, tag, value, step):
        self.file.write(f"{{step}}\\t{{tag}}\\t{{float(value)!r}}\\n")

    def close(self):
        self.file.close()


class {class_name}(difftk.Logger):
    """Scalars as a tab-separated file in the run directory (step, tag, value)."""

    name = "{component}"
    file: str = Field("scalars.tsv", min_length=1, description="file name in the run directory")

    def open(self, run):
        # Write only inside run.run_dir (the contract checks look for files outside it).
        run.run_dir.mkdir(parents=True, exist_ok=True)
        return {class_name}Writer(run.run_dir / self.file)
'''

AUGMENTATIONS = '''import torch
from pydantic import Field

import difftk
from difftk import hookimpl


class {class_name}(difftk.Augmentation):
    """Random quarter turns of square images, told to the network as the angle's (cos - 1, sin)."""

    name = "{component}"
    p: float = Field(0.5, ge=0, le=1, description="probability that an image is turned")

    def label_dim(self):
        # The network's augment_dim (unet and dit take the labels; zeros when sampling).
        return 2

    def draw(self, n, generator, device):
        # One row of random numbers per image, from the run's generator: apply reads only
        # its own row, so an item augments the same on any process and after a resume.
        return torch.rand((n, 2), generator=generator, device=device)

    def apply(self, images, draws):
        turns = (draws[:, 1] * 3).long().clamp(max=2) + 1  # 1..3 quarter turns
        turns = turns * (draws[:, 0] < self.p)  # 0: the image stays as it is
        out = images
        for k in (1, 2, 3):
            turned = torch.rot90(images, k, dims=(2, 3))  # square images keep their shape
            out = torch.where((turns == k).view(-1, 1, 1, 1), turned, out)
        angle = turns.float() * (torch.pi / 2)
        # An untouched image has the labels of sampling time: zeros.
        return out, torch.stack([angle.cos() - 1, angle.sin()], dim=1)
'''

LATENTS = '''from pydantic import Field
from torch.nn import functional as F

import difftk
from difftk import hookimpl


class {class_name}Codec(difftk.LatentCodec):
    """[C, H, W] -> [C f^2, H/f, W/f]: each f x f patch becomes f^2 channels."""

    lossless = True  # an exact rearrangement: the contract checks hold it to a round trip

    def __init__(self, factor: int):
        super().__init__(None, None)  # any image size divisible by f
        self.factor = factor

    def encode(self, x):
        return F.pixel_unshuffle(x, self.factor)

    def decode(self, z):
        return F.pixel_shuffle(z, self.factor)


class {class_name}(difftk.Latents):
    """Space-to-depth: f x f pixel patches as channels (DiT's patchify without the linear map)."""

    name = "{component}"
    factor: int = Field(2, ge=1, le=64, description="patch size f (divides the image size)")

    def build(self, pixels):
        # pixels() loads the data set: call it only when the transform is fitted on the
        # training split or needs the pixel shape.
        return {class_name}Codec(self.factor)
'''

# family -> (what the package adds, module body)
COMPONENTS: dict[str, tuple[str, str]] = {
    "architectures": ("a network architecture", ARCHITECTURES),
    "schedules": ("a noise schedule", SCHEDULES),
    "targets": ("a prediction target", TARGETS),
    "noise_sampling": ("a training noise-level distribution", NOISE_SAMPLING),
    "samplers": ("a sampler", SAMPLERS),
    "variance": ("a reverse-step variance", VARIANCE),
    "losses": ("a loss", LOSSES),
    "precision": ("a precision policy", PRECISION),
    "clipping": ("a gradient clipping rule", CLIPPING),
    "ema": ("an EMA decay rule", EMA),
    "optimizers": ("an optimizer", OPTIMIZERS),
    "lr_schedules": ("a learning-rate schedule", LR_SCHEDULES),
    "datasets": ("a data set", DATASETS),
    "augmentations": ("an augmentation pipeline", AUGMENTATIONS),
    "loggers": ("a logging backend", LOGGERS),
    "latents": ("a latent space", LATENTS),
}


def module_template(family: str) -> str:
    """The module's str.format template: docstring, the component, the hook."""
    what, body = COMPONENTS[family]
    return HEADER.replace("{what}", what) + body + HOOK.replace("{family}", family)
