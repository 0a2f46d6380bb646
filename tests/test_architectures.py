"""Architectures: published parameter and FLOP counts, the seed's ScoreNet, shapes, adaLN-Zero,
rotary positions, overfitting a batch, bf16 islands, checkpointing, channels_last, difftk info."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from difftk.cli import app
from difftk.diffusion.denoiser import Denoiser
from difftk.diffusion.objective import Objective
from difftk.nn.architecture import ArchitectureError, DataSpec
from difftk.nn.cost import network_cost
from difftk.nn.position import Rope2d, sincos_2d
from difftk.plugins.architectures.dit import DiT, DiTBlock
from difftk.plugins.architectures.mlp import MLP
from difftk.plugins.architectures.scorenet import ScoreNet
from difftk.plugins.architectures.unet import UNet

# Tiny members of each family, for the tests that run forward and backward passes.
TINY = {
    "mlp": MLP(width=64, depth=2),
    "scorenet": ScoreNet(preset="small"),
    "unet": UNet(channels=8, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[4],
                 num_heads=2),
    "dit": DiT(patch_size=2, hidden_size=32, depth=2, num_heads=2),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks run faster on one thread, and a busy machine cannot stall OpenMP barriers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def meta_parameters(arch, spec) -> int:
    with torch.device("meta"):
        net = arch.build(spec)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


# ------------------------------------------------------------------ published counts

def test_ddpm_cifar10_preset_has_the_published_parameter_count():
    # Ho et al. 2020, appendix B: 35.7M; google/ddpm-cifar10-32 counts 35,746,307.
    assert meta_parameters(UNet(preset="ddpm_cifar10"), DataSpec((3, 32, 32), 3)) == 35_746_307


# DiT paper (Peebles & Xie 2023) Table 4: parameters (M) and forward Gflops (multiply-adds)
# for class-conditional ImageNet 256 latents: 4x32x32 in, 8 channels out, 1000 classes.
DIT_TABLE = {"DiT-S/2": (33, 6.06), "DiT-S/8": (33, 0.36),
             "DiT-B/2": (130, 23.01), "DiT-XL/2": (675, 118.64)}
IMAGENET_LATENT = DataSpec((4, 32, 32), 8, num_classes=1000)


@pytest.mark.parametrize("preset", list(DIT_TABLE))
def test_dit_presets_match_the_paper_table(preset):
    millions, gflops = DIT_TABLE[preset]
    paper_model = DiT(preset=preset, position="sincos", qk_norm=False)  # the paper's blocks
    cost = network_cost(paper_model, IMAGENET_LATENT)
    assert round(cost.parameters / 1e6) == millions
    assert cost.flops / 2 == pytest.approx(gflops * 1e9, rel=0.01)  # flop_counter: 2 per MAC
    if preset == "DiT-XL/2":
        # DiT's models.py also counts its fixed 256 x 1152 sincos table as a parameter.
        assert cost.parameters + 256 * 1152 == 675_129_632
    # QK-norm adds one RMSNorm scale of head width for q and one for k per block; RoPE none.
    ours = DiT(preset=preset)
    head = ours.hidden_size // ours.num_heads
    assert network_cost(ours, IMAGENET_LATENT).parameters == cost.parameters + ours.depth * 2 * head


def test_flop_count_of_the_mlp_equals_its_closed_form():
    width, depth, emb, d = 32, 3, 16, 5
    spec = DataSpec((d,), d)
    cost = network_cost(MLP(width=width, depth=depth, embed_dim=emb), spec)
    macs = emb * width + width * width + d * width + depth * 2 * width * width + width * d
    assert cost.flops == 2 * macs


# ------------------------------------------------------------------ the seed's ScoreNet

class Dense(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.dense = nn.Linear(i, o)

    def forward(self, x):
        return self.dense(x)[..., None, None]


class SeedFourier(nn.Module):
    def __init__(self, embed_dim, scale=30.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embed_dim // 2) * scale, requires_grad=False)

    def forward(self, x):
        x_proj = x.unsqueeze(-1).float() * self.W * 2 * torch.pi
        return torch.cat([torch.sin(x_proj), torch.cos(x_proj)], dim=-1)


class SeedScoreNet(nn.Module):
    """Seed 004 Coding II's ScoreNet, transcribed (the reference for ours)."""

    def __init__(self, channels, embed_dim=256, group_num=4):
        super().__init__()
        c, g = channels, group_num
        self.embed = nn.Sequential(SeedFourier(embed_dim), nn.Linear(embed_dim, embed_dim))
        self.act = lambda x: x * torch.sigmoid(x)
        self.conv1 = nn.Conv2d(1, c[0], 3, stride=1, padding=1, bias=False)
        self.dense1, self.norm1 = Dense(embed_dim, c[0]), nn.GroupNorm(g, c[0])
        self.conv2 = nn.Conv2d(c[0], c[1], 3, stride=2, padding=1, bias=False)
        self.dense2, self.norm2 = Dense(embed_dim, c[1]), nn.GroupNorm(g, c[1])
        self.conv3 = nn.Conv2d(c[1], c[2], 3, stride=2, padding=1, bias=False)
        self.dense3, self.norm3 = Dense(embed_dim, c[2]), nn.GroupNorm(g, c[2])
        self.conv4 = nn.Conv2d(c[2], c[3], 3, stride=2, padding=1, bias=False)
        self.dense4, self.norm4 = Dense(embed_dim, c[3]), nn.GroupNorm(g, c[3])
        self.tconv4 = nn.ConvTranspose2d(c[3], c[2], 3, stride=2, padding=1, output_padding=0,
                                         bias=False)
        self.dense5, self.tnorm4 = Dense(embed_dim, c[2]), nn.GroupNorm(g, c[2])
        self.tconv3 = nn.ConvTranspose2d(c[2] * 2, c[1], 3, stride=2, padding=1, output_padding=1,
                                         bias=False)
        self.dense6, self.tnorm3 = Dense(embed_dim, c[1]), nn.GroupNorm(g, c[1])
        self.tconv2 = nn.ConvTranspose2d(c[1] * 2, c[0], 3, stride=2, padding=1, output_padding=1,
                                         bias=False)
        self.dense7, self.tnorm2 = Dense(embed_dim, c[0]), nn.GroupNorm(g, c[0])
        self.tconv1 = nn.ConvTranspose2d(c[0] * 2, 1, 3, stride=1, padding=1)

    def forward(self, x, t):
        emb = self.act(self.embed(t))
        h1 = self.act(self.norm1(self.conv1(x) + self.dense1(emb)))
        h2 = self.act(self.norm2(self.conv2(h1) + self.dense2(emb)))
        h3 = self.act(self.norm3(self.conv3(h2) + self.dense3(emb)))
        h4 = self.act(self.norm4(self.conv4(h3) + self.dense4(emb)))
        u = self.act(self.tnorm4(self.tconv4(h4) + self.dense5(emb)))
        u = self.act(self.tnorm3(self.tconv3(torch.cat([u, h3], dim=1)) + self.dense6(emb)))
        u = self.act(self.tnorm2(self.tconv2(torch.cat([u, h2], dim=1)) + self.dense7(emb)))
        return self.tconv1(torch.cat([u, h1], dim=1))


@pytest.mark.parametrize("preset", ["small", "medium", "large"])
def test_scorenet_presets_have_the_seeds_parameter_count(preset):
    ours = ScoreNet(preset=preset)
    with torch.device("meta"):
        ref = SeedScoreNet(ours.channels)
    expected = sum(p.numel() for p in ref.parameters() if p.requires_grad)
    assert meta_parameters(ours, DataSpec((1, 28, 28), 1)) == expected


def test_scorenet_computes_the_seeds_function_and_mean_scaling():
    torch.manual_seed(0)
    ref = SeedScoreNet([8, 16, 32, 64])
    ours = ScoreNet(preset="small").build(DataSpec((1, 28, 28), 1))
    ref_state, our_state = ref.state_dict(), ours.state_dict()
    assert len(ref_state) == len(our_state)
    ours.load_state_dict({k: v for k, v in zip(our_state, ref_state.values(), strict=True)})
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([1.0, 50.0, 200.0])
    with torch.no_grad():
        delta = ref(x, t)
        torch.testing.assert_close(ours(x, t), delta, rtol=1e-5, atol=1e-5)
        scaled = ScoreNet(preset="small", mean_scaling=True).build(DataSpec((1, 28, 28), 1))
        scaled.load_state_dict({**ours.state_dict(), "rho0": torch.tensor(0.7),
                                "rho1": torch.tensor(1.3)})
        # Coding I.2: mu = rho0 (x - rho1 delta)
        torch.testing.assert_close(scaled(x, t), 0.7 * (x - 1.3 * delta), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ shapes

IMAGE_SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("name", list(TINY))
@pytest.mark.parametrize("shape", [*IMAGE_SHAPES, (2,)])
def test_every_architecture_maps_each_data_shape_to_its_output_shape(name, shape):
    arch = TINY[name]
    if len(shape) == 1 and name != "mlp":
        with pytest.raises(ArchitectureError, match="takes images"):
            arch.build(DataSpec(shape, shape[0]))
        return
    out = 2 * shape[0]  # learned variance: 2C channels
    net = arch.build(DataSpec(shape, out, num_classes=10))
    x = torch.randn(2, *shape)
    with torch.no_grad():
        y = net(x, torch.rand(2), torch.tensor([3, 10]))  # 10 is the null label
        assert y.shape == (2, out, *shape[1:])
        half = torch.tensor([0.5])  # labels=None is the null label, index num_classes
        torch.testing.assert_close(net(x[1:], half), net(x[1:], half, torch.tensor([10])))


def test_builds_refuse_shapes_they_cannot_fit():
    with pytest.raises(ArchitectureError, match="divisible by patch size"):
        DiT(patch_size=3, hidden_size=32, depth=1, num_heads=2).build(DataSpec((1, 8, 8), 1))
    with pytest.raises(ArchitectureError, match="not divisible"):
        UNet(channel_mult=[1, 2, 2, 2]).build(DataSpec((1, 28, 28), 1))


def test_explicit_fields_override_a_preset_and_unknown_presets_fail(registry):
    from difftk.errors import RecipeError
    from difftk.recipe import validate

    assert UNet(preset="ddpm_cifar10", dropout=0.0).dropout == 0.0
    assert UNet(preset="ddpm_cifar10").channel_mult == [1, 2, 2, 2]
    data = {"data": {"name": "digits"}, "model": {"name": "dit", "preset": "DiT-M/2"},
            "schedule": {"name": "edm"}, "target": {"name": "edm", "sigma_data": 0.5},
            "noise_sampling": {"name": "log_normal"}, "sampler": {"name": "heun"}}
    with pytest.raises(RecipeError, match="model.preset"):
        validate(data, registry)


# ------------------------------------------------------------------ DiT pieces

def test_fresh_adaln_zero_block_is_the_identity():
    torch.manual_seed(0)
    block = DiTBlock(32, 4, 4.0, qk_norm=True, rope=Rope2d(8, 4, 4), fp32_attention=True)
    x, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    assert torch.equal(block(x, c), x)
    net = DiT(patch_size=2, hidden_size=32, depth=2, num_heads=4).build(DataSpec((1, 8, 8), 1))
    assert torch.equal(net(torch.randn(2, 1, 8, 8), torch.rand(2)), torch.zeros(2, 1, 8, 8))


def test_rope_keeps_norms_and_scores_depend_only_on_the_grid_offset():
    torch.manual_seed(0)
    grid = 6
    rope = Rope2d(16, grid, grid)
    q, k = torch.randn(16), torch.randn(16)
    rotated_q = rope(q.expand(1, 1, grid * grid, 16))[0, 0]  # q placed at every grid position
    rotated_k = rope(k.expand(1, 1, grid * grid, 16))[0, 0]
    torch.testing.assert_close(rotated_q.norm(dim=-1), q.norm().expand(grid * grid))

    def score(a, b):  # q at grid position a, k at grid position b
        return rotated_q[a[0] * grid + a[1]] @ rotated_k[b[0] * grid + b[1]]

    torch.testing.assert_close(score((0, 0), (2, 3)), score((3, 1), (5, 4)))
    torch.testing.assert_close(score((4, 4), (1, 0)), score((3, 5), (0, 1)))
    assert not torch.allclose(score((0, 0), (2, 3)), score((0, 0), (3, 2)))


def test_sincos_positions_follow_the_closed_form():
    table = sincos_2d(8, 3, 5)  # quarter = 2 frequencies: 1 and 10000^(-1/2)
    row, col = 2, 4
    w = torch.tensor([1.0, 0.01])
    expected = torch.cat([torch.sin(row * w), torch.cos(row * w), torch.sin(col * w),
                          torch.cos(col * w)])
    torch.testing.assert_close(table[row * 5 + col], expected)


# ------------------------------------------------------------------ training a batch

def _digits8() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().images[:8]).float().div(8).sub(1).unsqueeze(1)


def _parts(registry, kind):
    def make(family, name, **kw):
        return registry.get(family, name).cls(**kw)

    if kind == "eps":
        schedule = make("schedules", "linear")
        target = make("targets", "eps")
        levels = schedule.levels_at(torch.linspace(20, 980, 8).round())
    else:
        schedule = make("schedules", "edm")
        target = make("targets", "edm", sigma_data=0.75)
        levels = schedule.levels_from_sigma_edm(torch.logspace(-1.5, 1.5, 8))
    def objective_for(denoiser):
        return Objective.for_denoiser(denoiser, make("weights", "uniform"),
                                      make("noise_sampling", "log_normal"), make("losses", "mse"))

    return schedule, target, make("variance", "fixed_small"), objective_for, levels


@pytest.mark.parametrize("kind", ["eps", "edm"])
@pytest.mark.parametrize("name", list(TINY))
def test_each_architecture_overfits_a_batch_of_eight_digits(registry, name, kind):
    """Fixed noise and levels turn training into regression on 8 pairs: the loss must fall 10x."""
    torch.manual_seed(0)
    x0 = _digits8()
    schedule, target, variance, objective_for, levels = _parts(registry, kind)
    denoiser = Denoiser(TINY[name].build(DataSpec((1, 8, 8), 1)), schedule, target, variance)
    objective = objective_for(denoiser)
    opt = torch.optim.Adam(denoiser.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        loss = objective(denoiser, x0, None, torch.Generator().manual_seed(0), levels)[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] < losses[0] / 10:
            break
    assert losses[-1] < losses[0] / 10, (len(losses), losses[0], losses[-1])


# ------------------------------------------------------------------ precision islands

def _perturbed(net: nn.Module) -> nn.Module:
    """Give the zero-initialised layers weights so that every path contributes to the output."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0, 0.05)
    return net.eval()


@pytest.mark.parametrize("name", list(TINY))
def test_bf16_autocast_forward_matches_fp32_at_the_ends_of_the_noise_range(registry, name):
    """Seed 001 §12.4: norms, softmax, embeddings and the head in fp32 keep bf16 within 3e-2."""
    torch.manual_seed(0)
    x0 = _digits8()[:4]
    eps = torch.randn_like(x0)
    edm = registry.get("targets", "edm").cls(sigma_data=0.75)
    schedule = registry.get("schedules", "edm").cls()
    linear = registry.get("schedules", "linear").cls()
    net = _perturbed(TINY[name].build(DataSpec((1, 8, 8), 1)))
    cases = []
    for sigma in (0.002, 80.0):  # EDM: the preconditioned input c_in x and c_noise
        levels = schedule.levels_from_sigma_edm(torch.full((4,), sigma))
        x_t = levels.alpha[:, None, None, None] * x0 + levels.sigma[:, None, None, None] * eps
        pre = edm.preconditioning(levels)
        cases.append((pre.net_input(x_t), pre.noise))
    for t in (1.0, 1000.0):  # DDPM: x_t and the integer t
        levels = linear.levels_at(torch.full((4,), t))
        x_t = levels.alpha[:, None, None, None] * x0 + levels.sigma[:, None, None, None] * eps
        cases.append((x_t, levels.t))
    with torch.no_grad():
        for x_in, time in cases:
            reference = net(x_in, time)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = net(x_in, time)
            assert low.dtype == torch.float32  # the output head is an fp32 island
            assert torch.isfinite(low).all()
            error = (low - reference).norm() / reference.norm()
            assert error < 3e-2, (name, float(time[0]), float(error))


def test_attention_scores_are_computed_in_fp32_under_autocast():
    from difftk.nn.attention import attention

    q = torch.randn(1, 1, 4, 8) * 40  # logits ~1e4: bf16 spacing there is 64
    k, v = torch.randn(1, 1, 4, 8) * 40, torch.randn(1, 1, 4, 8)
    exact = F.scaled_dot_product_attention(q.double(), k.double(), v.double()).float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v)
    torch.testing.assert_close(out, exact, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ checkpointing, memory format

@pytest.mark.parametrize("name", list(TINY))
def test_gradient_checkpointing_gives_the_same_gradients(name):
    arch = TINY[name]
    spec = DataSpec((1, 8, 8), 1)
    torch.manual_seed(0)
    plain = _perturbed(arch.build(spec)).train()
    ckpt = arch.model_copy(update={"checkpoint": True}).build(spec).train()
    ckpt.load_state_dict(plain.state_dict())
    x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
    grads = []
    for net in (plain, ckpt):
        net(x, t).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["unet", "scorenet"])
def test_channels_last_computes_the_same_function(name):
    arch = TINY[name]
    spec = DataSpec((3, 32, 32), 3)
    torch.manual_seed(0)
    plain = _perturbed(arch.build(spec))
    nhwc = arch.model_copy(update={"channels_last": True}).build(spec).eval()
    nhwc.load_state_dict(plain.state_dict())
    assert nhwc.inp.weight.is_contiguous(memory_format=torch.channels_last) if name == "unet" \
        else nhwc.enc[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    x, t = torch.randn(2, 3, 32, 32), torch.rand(2)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x, t), plain(x, t), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ recipes and difftk info

runner = CliRunner()


def test_info_prints_parameters_and_flops(root):
    result = runner.invoke(app, ["info", str(root / "recipes/architectures/dit.toml"),
                                 "--shape", "1,8,8"])
    assert result.exit_code == 0, result.output
    cost = network_cost(DiT(patch_size=2, hidden_size=128, depth=4, num_heads=4),
                        DataSpec((1, 8, 8), 1))
    assert f"parameters: {cost.parameters:,}" in result.output
    assert f"forward FLOPs per image: {cost.flops:,}" in result.output
    bad = runner.invoke(app, ["info", str(root / "recipes/architectures/dit.toml"),
                              "--shape", "1,a"])
    assert bad.exit_code == 1 and "--shape" in bad.output


def test_info_measures_a_latent_recipe_on_its_latents(root):
    result = runner.invoke(app, ["info", str(root / "recipes/edm.toml"), "--set",
                                 'latents.name="dct"', "--set", "latents.keep=4"])
    assert result.exit_code == 0, result.output
    assert "data: shape 1x4x4" in result.output  # digits are 8x8; the network sees 4x4


@pytest.mark.parametrize("name", ["mlp", "scorenet", "unet", "dit"])
def test_each_architecture_recipe_trains_on_digits(root, tmp_path, name):
    from difftk.recipe import load_recipe
    from difftk.run.runtime import make_runtime
    from difftk.train.trainer import Trainer

    sets = [f'run.out_dir="{tmp_path}"', "train.steps=3", "log.val_every=0",
            "log.sample_every=0", "log.checkpoint_every=0", "log.num_samples=2",
            "log.tensorboard=false"]
    if name == "scorenet":  # its recipe samples ancestrally over all T = 200 steps
        sets.append('sampler.name="ddim"')
    sets.append("sampler.steps=2")
    r = load_recipe(root / f"recipes/architectures/{name}.toml", sets, warn=False)
    assert r.parts["model"].name == name
    trainer = Trainer(r, make_runtime("cpu"), progress=False)
    trainer.fit()
    assert trainer.step == 3
    assert (tmp_path / r.run.name / "samples" / "final.png").exists()
