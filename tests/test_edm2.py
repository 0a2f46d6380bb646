"""EDM2 (Karras et al. 2024b): magnitude-preserving layers and the learned loss weighting.

The layers are checked against EDM2's equations written out here (training/networks_edm2.py
of the EDM2 code base, transcribed); the learned weighting against the optimum of
l / e^u + u, which is u = ln E[l | sigma].
"""

import math

import numpy as np
import pytest
import torch

from difftk.diffusion.levels import Levels
from difftk.nn.loss_uncertainty import LossUncertainty
from difftk.nn.magnitude_preserving import MPConv, MPFourier, mp_cat, mp_silu, mp_sum, normalize


def _edm2_normalize(x, eps=1e-4):  # EDM2's normalize, in numpy
    dim = tuple(range(1, x.ndim))
    norm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=dim, keepdims=True))
    norm = eps + norm * np.sqrt(norm.size / x.size)
    return x / norm


def test_layers_equal_edm2s_equations():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 6, generator=g), torch.randn(4, 10, generator=g)
    # eq. 88: mp_sum
    t = 0.3
    assert torch.allclose(mp_sum(a, a.flip(0), t),
                          ((1 - t) * a + t * a.flip(0)) / math.sqrt((1 - t) ** 2 + t**2))
    # eq. 103: mp_cat
    c = math.sqrt(16 / ((1 - t) ** 2 + t**2))
    expected = torch.cat([c / math.sqrt(6) * (1 - t) * a, c / math.sqrt(10) * t * b], dim=1)
    assert torch.allclose(mp_cat(a, b, t=t), expected)
    # eq. 81: mp_silu
    assert torch.allclose(mp_silu(a), torch.nn.functional.silu(a) / 0.596)
    w = torch.randn(3, 5, 3, 3, generator=g)
    assert np.allclose(normalize(w).numpy(), _edm2_normalize(w.numpy()), rtol=1e-6)


@torch.no_grad()
def test_layers_preserve_unit_magnitude():
    """Unit-variance inputs stay unit-variance (the conv away from its zero-padded border)."""
    torch.manual_seed(0)
    x = torch.randn(4096, 64)
    y = MPConv(64, 32, kernel=())(x)
    assert float(y.std()) == pytest.approx(1.0, rel=0.05)
    assert float(mp_silu(torch.randn(200_000)).pow(2).mean().sqrt()) == pytest.approx(1.0,
                                                                                      rel=0.01)
    assert float(mp_sum(torch.randn(200_000), torch.randn(200_000)).std()) == pytest.approx(
        1.0, rel=0.01)
    feats = MPFourier(256)(torch.randn(4096))
    assert float(feats.pow(2).mean()) == pytest.approx(1.0, rel=0.05)
    image = torch.randn(8, 16, 12, 12)
    inner = MPConv(16, 16, kernel=(3, 3))(image)[:, :, 1:-1, 1:-1]
    assert float(inner.std()) == pytest.approx(1.0, rel=0.05)


def test_forced_weight_normalization_happens_in_training_only():
    """§3.6: each training forward rescales every output row of the stored weight to
    unit-variance entries, ||w_i|| = sqrt(fan_in); evaluation leaves the weight as it is."""
    layer = MPConv(8, 4, kernel=(3, 3))
    with torch.no_grad():
        layer.weight.mul_(5.0)
    layer.eval()
    layer(torch.randn(2, 8, 5, 5))
    norms = layer.weight.detach().flatten(1).norm(dim=1)
    assert float(norms.min()) > 5.0  # eval leaves it
    layer.train()
    layer(torch.randn(2, 8, 5, 5))
    norms = layer.weight.detach().flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full((4,), math.sqrt(72.0)), rtol=1e-3)


def test_objective_trains_loss_over_exp_u_plus_u():
    """The per-sample loss is l e^-u + u with u the head's output at the sample's level."""
    from difftk.diffusion.denoiser import Denoiser
    from difftk.diffusion.objective import Objective
    from difftk.plugins.losses import MSE
    from difftk.plugins.noise_sampling import LogNormal
    from difftk.plugins.schedules import EDM
    from difftk.plugins.targets import EDMPrecond
    from difftk.plugins.variance import FixedSmall
    from difftk.plugins.weights import EDM2Uncertainty, EDMWeight

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x, noise, labels=None):
            return self.lin(x)

    head = EDM2Uncertainty(sigma_data=0.5).uncertainty_network()
    learned = Denoiser(Net(), EDM(), EDMPrecond(sigma_data=0.5), FixedSmall(), head)
    fixed = Denoiser(learned.net, EDM(), EDMPrecond(sigma_data=0.5), FixedSmall())
    x0 = torch.randn(16, 3)
    args = dict(x0=x0, labels=None)

    def losses(denoiser, weighting):
        objective = Objective.for_denoiser(denoiser, weighting, LogNormal(), MSE())
        return objective(denoiser, generator=torch.Generator().manual_seed(1), **args)

    plain, levels = losses(fixed, EDMWeight(sigma_data=0.5))
    with_u, _ = losses(learned, EDM2Uncertainty(sigma_data=0.5))
    u = head(levels)
    assert torch.allclose(with_u, plain * torch.exp(-u) + u, rtol=1e-5, atol=1e-6)
    assert "uncertainty.linear.weight" in learned.state_dict()


def test_learned_log_variance_reaches_the_log_of_the_expected_loss():
    """min over u of E[l e^-u + u | sigma] is at u = ln E[l | sigma]: trained on losses whose
    mean is 1 + sigma^2 (exponential draws), u(sigma) learns ln(1 + sigma^2)."""
    torch.manual_seed(0)
    head = LossUncertainty(64)
    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=2e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(600):
        sigma = torch.exp(torch.randn(512, generator=g) * 1.2 - 1.2)
        loss = (1 + sigma**2) * torch.empty(512).exponential_(generator=g)
        u = head(Levels(alpha=torch.ones(512), sigma=sigma))
        (loss * torch.exp(-u) + u).mean().backward()
        opt.step()
        opt.zero_grad()
    head.eval()
    sigma = torch.tensor([0.1, 0.3, 1.0, 3.0])
    u = head(Levels(alpha=torch.ones(4), sigma=sigma))
    assert torch.allclose(u, torch.log1p(sigma**2), atol=0.15), u


def test_edm2_weighting_trains_and_reloads_from_the_cli(root, tmp_path):
    """A run with weight = edm2_uncertainty saves u's parameters with the model, and the
    sampler rebuilds the denoiser around them."""
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from difftk.cli import app

    runner = CliRunner()
    args = ["train", str(root / "recipes/edm.toml"), "--no-progress"]
    for item in ["train.steps=6", "train.batch_size=16", "model.channels=8",
                 "model.channel_mult=[1]", "log.val_every=0", "log.sample_every=0",
                 "log.checkpoint_every=6", 'precision.name="fp32"', f'run.out_dir="{tmp_path}"',
                 'weight.name="edm2_uncertainty"', "weight.channels=16"]:
        args += ["--set", item]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    run = tmp_path / "edm"
    weights = load_file(str(run / "checkpoints/latest/model.safetensors"))
    assert weights["uncertainty.linear.weight"].shape == (1, 16)
    out = runner.invoke(app, ["sample", str(run), "-n", "2", "--steps", "2", "-o",
                              str(tmp_path / "s.png")])
    assert out.exit_code == 0, out.output


# ---------------------------------------------------------------- edm2_unet
# EDM2's training/networks_edm2.py, transcribed as functions of a state dict (numpy-free torch,
# none of difftk's layers), so the network is checked against the reference's own equations.
def _ref_normalize(x, dim=None, eps=1e-4):
    if dim is None:
        dim = list(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = torch.add(eps, norm, alpha=np.sqrt(norm.numel() / x.numel()))
    return x / norm.to(x.dtype)


def _ref_mpconv(w, x, gain=1):
    w = _ref_normalize(w.to(torch.float32))
    w = w * (gain / np.sqrt(w[0].numel()))
    if w.ndim == 2:
        return x @ w.t()
    return torch.nn.functional.conv2d(x, w, padding=(w.shape[-1] // 2,))


def _ref_silu(x):
    return torch.nn.functional.silu(x) / 0.596


def _ref_sum(a, b, t=0.5):
    return a.lerp(b, t) / np.sqrt((1 - t) ** 2 + t ** 2)


def _ref_cat(a, b, dim=1, t=0.5):
    na, nb = a.shape[dim], b.shape[dim]
    c = np.sqrt((na + nb) / ((1 - t) ** 2 + t ** 2))
    return torch.cat([c / np.sqrt(na) * (1 - t) * a, c / np.sqrt(nb) * t * b], dim=dim)


def _ref_resample(x, mode):
    if mode == "keep":
        return x
    f = np.float32([1, 1])
    pad = (len(f) - 1) // 2
    f = f / f.sum()
    f = torch.as_tensor(np.outer(f, f)[np.newaxis, np.newaxis, :, :], dtype=x.dtype)
    c = x.shape[1]
    if mode == "down":
        return torch.nn.functional.conv2d(x, f.tile([c, 1, 1, 1]), groups=c, stride=2,
                                          padding=(pad,))
    return torch.nn.functional.conv_transpose2d(x, (f * 4).tile([c, 1, 1, 1]), groups=c,
                                                stride=2, padding=(pad,))


def _ref_block(sd, p, x, emb, flavor, mode, heads, res_balance=0.3, attn_balance=0.3,
               clip_act=256):
    x = _ref_resample(x, mode)
    skip = sd.get(p + "conv_skip.weight")
    if flavor == "enc":
        if skip is not None:
            x = _ref_mpconv(skip, x)
        x = _ref_normalize(x, dim=1)
    y = _ref_mpconv(sd[p + "conv_res0.weight"], _ref_silu(x))
    c = _ref_mpconv(sd[p + "emb_linear.weight"], emb, gain=sd[p + "emb_gain"]) + 1
    y = _ref_silu(y * c.unsqueeze(2).unsqueeze(3).to(y.dtype))
    y = _ref_mpconv(sd[p + "conv_res1.weight"], y)
    if flavor == "dec" and skip is not None:
        x = _ref_mpconv(skip, x)
    x = _ref_sum(x, y, t=res_balance)
    if heads:
        y = _ref_mpconv(sd[p + "attn_qkv.weight"], x)
        y = y.reshape(y.shape[0], heads, -1, 3, y.shape[2] * y.shape[3])
        q, k, v = _ref_normalize(y, dim=2).unbind(3)
        w = torch.einsum("nhcq,nhck->nhqk", q, k / np.sqrt(q.shape[2])).softmax(dim=3)
        y = torch.einsum("nhqk,nhck->nhcq", w, v)
        y = _ref_mpconv(sd[p + "attn_proj.weight"], y.reshape(*x.shape))
        x = _ref_sum(x, y, t=attn_balance)
    return x.clip(-clip_act, clip_act)


def _ref_unet(net, sd, x, noise_labels, class_labels):
    """UNet.forward: the embedding, the encoder keeping every output, the decoder
    concatenating a skip before each 'block'."""
    y = noise_labels.to(torch.float32).ger(sd["emb_fourier.freqs"]) + sd["emb_fourier.phases"]
    emb = _ref_mpconv(sd["emb_noise.weight"], y.cos() * np.sqrt(2))
    emb = _ref_sum(emb, _ref_mpconv(sd["emb_label.weight"],
                                    class_labels * np.sqrt(class_labels.shape[1])), t=0.5)
    emb = _ref_silu(emb)
    x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    skips = []
    for name, block in net.enc.items():
        if "conv" in name:
            x = _ref_mpconv(sd[f"enc.{name}.weight"], x)
        else:
            x = _ref_block(sd, f"enc.{name}.", x, emb, "enc",
                           "down" if "down" in name else "keep", block.num_heads)
        skips.append(x)
    for name, block in net.dec.items():
        if "block" in name:
            x = _ref_cat(x, skips.pop(), t=0.5)
        x = _ref_block(sd, f"dec.{name}.", x, emb, "dec", "up" if "up" in name else "keep",
                       block.num_heads)
    return _ref_mpconv(sd["out_conv.weight"], x, gain=sd["out_gain"])


def test_edm2_unet_equals_the_reference_equations_layer_by_layer():
    from difftk.nn.architecture import DataSpec
    from difftk.plugins.architectures.edm2_unet import EDM2UNet

    torch.manual_seed(0)
    arch = EDM2UNet(channels=16, channel_mult=[1, 2, 3], num_blocks=2,
                    attention_resolutions=[8], channels_per_head=16)
    net = arch.build(DataSpec((3, 16, 16), 3, 5)).eval()
    with torch.no_grad():  # the gains start at zero, which would hide every branch
        for name, p in net.named_parameters():
            if name.endswith("gain"):
                p.fill_(0.7)
    sd = {k: v.detach() for k, v in net.state_dict().items()}
    x, noise = torch.randn(4, 3, 16, 16), torch.randn(4) * 0.5
    labels = torch.tensor([0, 3, 5, 1])  # 5: the null label, EDM2's zero vector
    onehot = torch.nn.functional.one_hot(labels, 6)[:, :5].float()
    with torch.no_grad():
        ours = net(x, noise, labels)
        ref = _ref_unet(net, sd, x, noise, onehot)
        # and block by block: the first encoder block with attention, the decoder's "in0"
        emb = torch.randn(4, 48)
        h = torch.randn(4, 16, 8, 8)
        assert torch.allclose(net.enc["8x8_block0"](h, emb),
                              _ref_block(sd, "enc.8x8_block0.", h, emb, "enc", "keep", 2),
                              atol=1e-5)
        h = torch.randn(4, 48, 4, 4)
        assert torch.allclose(net.dec["4x4_in0"](h, emb),
                              _ref_block(sd, "dec.4x4_in0.", h, emb, "dec", "keep", 3),
                              atol=1e-5)
    assert float(ours.abs().max()) > 0.01
    assert torch.allclose(ours, ref, atol=1e-5), float((ours - ref).abs().max())


def test_edm2_presets_have_the_published_parameter_counts():
    """EDM2 Table 2: XS 125M, S 280M, M 498M, L 777M, XL 1119M, XXL 1523M (ImageNet-512
    latents, 64x64x4, 1,000 classes)."""
    from difftk.nn.architecture import DataSpec
    from difftk.plugins.architectures.edm2_unet import EDM2UNet

    published = {"xs": 125, "s": 280, "m": 498, "l": 777, "xl": 1119, "xxl": 1523}
    for size, millions in published.items():
        with torch.device("meta"):
            net = EDM2UNet(preset=f"edm2-img512-{size}").build(DataSpec((4, 64, 64), 4, 1000))
        count = sum(p.numel() for p in net.parameters()) / 1e6
        assert count == pytest.approx(millions, abs=0.6), (size, count)


def test_edm2_unet_refuses_images_its_levels_cannot_halve():
    from difftk.nn.architecture import ArchitectureError, DataSpec
    from difftk.plugins.architectures.edm2_unet import EDM2UNet

    with pytest.raises(ArchitectureError, match="divides by 8"):
        EDM2UNet().build(DataSpec((1, 28, 28), 1))
    with pytest.raises(ValueError, match="unknown preset"):
        EDM2UNet(preset="edm2-img512-huge")
