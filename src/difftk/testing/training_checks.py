"""Contracts of the training machinery: architectures, losses, precision, clipping, EMA,
optimizers, learning-rate schedules, data sets and loggers. Each check runs a few tensor operations
on CPU."""

from __future__ import annotations

import torch

from difftk.testing.runner import partners

IMAGE, VECTOR = (1, 8, 8), (2,)


# ---------------------------------------------------------------- architectures
def _buildable_specs(arch):
    from difftk.errors import DifftkError
    from difftk.nn.architecture import DataSpec

    built = []
    for shape in (IMAGE, VECTOR):
        spec = DataSpec(shape=shape, out_channels=shape[0], num_classes=0)
        try:
            torch.manual_seed(0)
            built.append((spec, arch.build(spec)))
        except DifftkError:
            continue  # this architecture refuses this kind of data, with a sentence
    return built


def check_architecture_maps_data_shape(arch) -> None:
    """build(spec) gives a network mapping [B, *shape] to [B, out_channels, ...], finite,
    trainable (every parameter receives a gradient) and seeded by torch.manual_seed."""
    built = _buildable_specs(arch)
    assert built, f"{arch.name} builds for neither images {IMAGE} nor vectors {VECTOR}"
    for spec, net in built:
        # Seeding first: a forward in training mode may rewrite weights (EDM2's forced
        # weight normalisation), so the initial weights are compared before one runs.
        torch.manual_seed(0)
        again = arch.build(spec)
        for (name, p), q in zip(net.named_parameters(), again.parameters(), strict=True):
            assert torch.equal(p.detach(), q.detach()), f"{name} differs under the same seed"
        x = torch.randn(3, *spec.shape, generator=torch.Generator().manual_seed(0))
        time = torch.tensor([0.1, 1.0, 10.0])
        out = net(x, time, None)
        assert out.shape == (3, spec.out_channels, *spec.shape[1:]), \
            f"output {tuple(out.shape)} for input {tuple(x.shape)}"
        assert torch.isfinite(out).all(), "non-finite output"
        out.square().mean().backward()
        dead = [n for n, p in net.named_parameters() if p.requires_grad and p.grad is None]
        assert not dead, f"parameters without a gradient: {dead[:3]}"


# ---------------------------------------------------------------- losses
def _loss_inputs(loss, schedule, exact: bool):
    from difftk.diffusion.loss import LossInputs
    from difftk.registry import default_registry
    from difftk.testing.denoisers import gaussian_denoiser

    g = torch.Generator().manual_seed(0)
    uniform = default_registry().get("noise_sampling", "uniform_t").cls(discrete=True)
    levels = uniform.sample(6, schedule, g, "cpu")
    x0 = (torch.rand(6, 1, 4, 4, generator=g) * 2 - 1).mul(127.5).round().div(127.5)
    eps = torch.randn(6, 1, 4, 4, generator=g)
    a, s = levels.alpha.view(-1, 1, 1, 1), levels.sigma.view(-1, 1, 1, 1)
    x_t = a * x0 + s * eps
    denoiser = gaussian_denoiser(schedule)
    target = denoiser.target.value(x0, eps, levels)
    pred = target.clone() if exact else target + 0.1 * torch.randn(target.shape, generator=g)
    pred.requires_grad_(True)
    return pred, LossInputs(pred=pred, target=target, weight=torch.ones(6), x0=x0, x_t=x_t,
                            eps=eps, levels=levels, schedule=schedule,
                            parameterization=denoiser.target, variance=denoiser.variance)


def check_loss_per_sample_and_differentiable(loss) -> None:
    """One finite loss per sample whose gradient reaches the prediction."""
    usable = partners(loss, "schedules")
    assert usable, f"no built-in schedule is usable with {loss.name}"
    for schedule in usable:
        pred, inputs = _loss_inputs(loss, schedule, exact=False)
        per_sample = loss(inputs)
        assert per_sample.shape == (6,), f"loss shape {tuple(per_sample.shape)}, expected (6,)"
        assert torch.isfinite(per_sample).all(), f"non-finite loss on {schedule.name}"
        per_sample.sum().backward()
        assert pred.grad is not None and torch.isfinite(pred.grad).all() and \
            pred.grad.abs().sum() > 0, f"no finite gradient reaches the prediction on {schedule.name}"


# ---------------------------------------------------------------- precision
def check_precision_runs_on_cpu(precision) -> None:
    """autocast(cpu) runs a layer to a finite result; the scaler is None or scales."""
    device = torch.device("cpu")
    dtype = precision.autocast_dtype(device)
    assert dtype is None or dtype.is_floating_point, f"autocast dtype {dtype}"
    layer = torch.nn.Linear(4, 4)
    with precision.autocast(device):
        out = layer(torch.ones(2, 4))
    assert torch.isfinite(out.float()).all(), "non-finite output under autocast"
    scaler = precision.make_scaler(device)
    if scaler is not None:
        for method in ("scale", "unscale_", "step", "update"):
            assert hasattr(scaler, method), f"the scaler has no {method}()"


# ---------------------------------------------------------------- clipping
def check_clipping_reports_true_norms(clipping) -> None:
    """clip() returns (norm before, norm after) with after <= before; after is the real
    global norm of the clipped gradients, which stay finite."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    for p in model.parameters():
        p.grad = 50.0 * torch.randn_like(p)
    before_true = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    before, after = clipping.clip(model.parameters())
    assert torch.isclose(before.float(), before_true, rtol=1e-4), \
        f"reported norm before {float(before):.4g}, true {float(before_true):.4g}"
    after_true = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert all(torch.isfinite(p.grad).all() for p in model.parameters()), "non-finite gradients"
    assert float(after) <= float(before) * (1 + 1e-5), "the norm grew"
    assert torch.isclose(after.float(), after_true, rtol=1e-4), \
        f"reported norm after {float(after):.4g}, true {float(after_true):.4g}"


# ---------------------------------------------------------------- ema
def check_ema_decay_in_unit_interval(ema) -> None:
    """beta(step) is in [0, 1] from the first step to a million."""
    if not ema.enabled:
        return  # a disabled average has no decay to check
    for step in (1, 2, 10, 1000, 10**6):
        beta = ema.decay(step, 128)
        assert 0.0 <= beta <= 1.0, f"decay {beta} at step {step}"


# ---------------------------------------------------------------- optimizers
def check_optimizer_descends(optimizer) -> None:
    """Five steps on ||p||^2 lower the loss and keep the parameters finite."""
    p = torch.nn.Parameter(torch.ones(8))
    opt = optimizer.build([p])
    start = float(p.detach().square().sum())
    for _ in range(5):
        opt.zero_grad()
        p.square().sum().backward()
        opt.step()
    end = float(p.detach().square().sum())
    assert torch.isfinite(p).all() and end < start, f"loss {start:.4g} -> {end:.4g}"


def check_optimizer_takes_parameter_groups(optimizer) -> None:
    """build() accepts the trainer's parameter groups (dicts with a name and an lr multiplier,
    difftk.optim.param_groups) and keeps their keys, which set each group's learning rate."""
    a, b = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(2))
    opt = optimizer.build([{"params": [a], "name": "default", "lr_multiplier": 1.0},
                           {"params": [b], "name": "head", "lr_multiplier": 20.0}])
    groups = opt.param_groups
    assert [g.get("name") for g in groups] == ["default", "head"], "the group names were lost"
    assert [g.get("lr_multiplier") for g in groups] == [1.0, 20.0], "the multipliers were lost"


# ---------------------------------------------------------------- lr schedules
def check_lr_schedule_pure_and_bounded(schedule) -> None:
    """factor(clock) is finite, in [0, 1] (optimizer.lr is the peak), not 0 throughout, and a
    pure function of the clock: asked again in another order it answers the same (resume)."""
    import math

    from difftk.optim.lr_schedule import TrainingClock

    steps = [0, 1, 10, 99, 500, 999, 5000]
    first = [schedule.factor(TrainingClock(s, 64, 1000)) for s in steps]
    again = [schedule.factor(TrainingClock(s, 64, 1000)) for s in reversed(steps)][::-1]
    assert first == again, f"factors {first} differ when asked again: {again}"
    assert all(math.isfinite(f) and 0 <= f <= 1 for f in first), f"factors {first}"
    assert max(first) > 0, "the learning rate is 0 at every step"


# ---------------------------------------------------------------- datasets
def check_dataset_loads(dataset) -> None:
    """load() gives finite train and held-out splits of one shape; data that are not on this
    machine are reported as one DataError sentence, never a traceback."""
    from difftk.errors import DataError

    try:
        bundle = dataset.load()
    except DataError as exc:
        text = str(exc)
        assert text and "\n" not in text and "Traceback" not in text, f"unclear error: {text!r}"
        return
    assert bundle.train.shape[0] > 0 and bundle.heldout.shape[0] > 0, "an empty split"
    assert bundle.train.shape[1:] == bundle.heldout.shape[1:], "train and held-out shapes differ"
    assert torch.isfinite(bundle.train).all(), "non-finite training data"
    expected_dims = 4 if bundle.kind == "image" else 2
    assert bundle.train.dim() == expected_dims, f"{bundle.kind} data of shape {tuple(bundle.train.shape)}"
    assert bundle.sigma_data > 0, "zero standard deviation"
    if bundle.train_labels is not None:
        assert bundle.train_labels.shape[0] == bundle.train.shape[0], "one label per training item"


# ---------------------------------------------------------------- loggers
def check_logger_writes_only_inside_the_run(logger) -> None:
    """An opened logger takes every kind of record (scalars, histograms, images, text, the
    hparams record), closes, and writes nothing outside the run directory."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from difftk.logger import RunInfo

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = root / "runs" / "contract"
        writer = logger.open(RunInfo(run_dir, "contract", {"weight.name": "edm", "train.steps": 2}))
        writer.text("recipe", "[weight]\nname = \"edm\"", 0)
        for step in (1, 2):
            writer.scalar("loss/train", 1.0 / step, step)
            writer.histogram("ln_sigma_drawn", np.linspace(-2.0, 2.0, 16), step)
            writer.image("samples", np.zeros((8, 8, 3), dtype=np.uint8), step)
        writer.hparams({"weight.name": "edm", "train.steps": 2}, {"loss/train": 0.5})
        writer.flush()
        writer.close()
        outside = [p for p in root.rglob("*") if p.is_file() and run_dir not in p.parents]
        assert not outside, f"wrote outside the run directory: {outside[:3]}"


CHECKS = {
    "architectures": [check_architecture_maps_data_shape],
    "losses": [check_loss_per_sample_and_differentiable],
    "precision": [check_precision_runs_on_cpu],
    "clipping": [check_clipping_reports_true_norms],
    "ema": [check_ema_decay_in_unit_interval],
    "optimizers": [check_optimizer_descends, check_optimizer_takes_parameter_groups],
    "lr_schedules": [check_lr_schedule_pure_and_bounded],
    "datasets": [check_dataset_loads],
    "loggers": [check_logger_writes_only_inside_the_run],
}
