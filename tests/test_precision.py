"""Precision policies: fp16 loss scaling skips overflow and clips true gradients; fp8 refuses."""

import pytest
import torch

from difftk.errors import DifftkError
from difftk.recipe import load_recipe
from difftk.run.runtime import make_runtime
from difftk.train.trainer import Trainer

SMALL = ["model.width=16", "model.depth=1", "train.batch_size=16", "log.num_samples=8",
         "sampler.steps=2", "log.val_every=0", "log.checkpoint_every=0"]


def trainer(root, tmp_path, name, *extra) -> Trainer:
    sets = [f'run.out_dir="{tmp_path}"', f'run.name="{name}"', *SMALL, *extra]
    return Trainer(load_recipe(root / "recipes/toy2d.toml", sets, warn=False), make_runtime("cpu"),
                   progress=False)


def test_fp16_scaler_backs_off_skips_overflow_and_keeps_training(root, tmp_path):
    # A loss scale of 2^40 overflows fp16 gradients (max 65504) until it has backed off.
    tr = trainer(root, tmp_path, "fp16", 'precision.name="fp16"', "precision.init_scale=1099511627776.0",
                 "train.steps=40")
    assert tr.scaler.get_scale() == 2.0**40
    applied = []
    for _ in range(40):
        before = [p.detach().clone() for p in tr.model.parameters()]
        result = tr.train_step(*tr.batches.next())
        unchanged = all(torch.equal(a, p) for a, p in zip(before, tr.model.parameters(), strict=True))
        assert unchanged == (not result.applied)  # a skipped step leaves every weight as it was
        applied.append(result.applied)
    skipped = applied.count(False)
    assert skipped >= 10 and tr.guard.scaler_skipped == skipped and tr.guard.skipped == 0
    assert tr.scaler.get_scale() == 2.0 ** (40 - skipped)  # halved once per skipped step
    assert applied[-5:] == [True] * 5  # training goes on once the scale fits
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())


def test_clipping_after_unscaling_matches_fp32(root, tmp_path):
    # The same first step in fp32 and fp16: the clipping rule sees the true gradient norm.
    norms = {}
    for name in ("fp32", "fp16"):
        tr = trainer(root, tmp_path, name, f'precision.name="{name}"', 'clipping.name="global_norm"',
                     "clipping.max_norm=0.01")
        result = tr.train_step(*tr.batches.next())
        assert result.applied
        norms[name] = (float(result.grad_norm_before), float(result.grad_norm_after))
    assert norms["fp16"][0] == pytest.approx(norms["fp32"][0], rel=2e-2)  # not 65536x larger
    assert norms["fp32"][0] > 0.01
    assert norms["fp16"][1] == pytest.approx(norms["fp32"][1], rel=1e-4)
    assert norms["fp32"][1] == pytest.approx(0.01, rel=1e-4)


def test_fp8_is_refused_with_a_sentence_where_unsupported(root, tmp_path):
    with pytest.raises(DifftkError, match="fp8 needs a CUDA device with fp8 tensor cores"):
        trainer(root, tmp_path, "fp8", 'precision.name="fp8"')


def test_tf32_is_plain_fp32_off_ampere_and_bf16_runs(root, tmp_path):
    tr = trainer(root, tmp_path, "tf32", 'precision.name="tf32"')
    assert tr.precision.autocast_dtype(tr.device) is None
    assert torch.backends.cuda.matmul.allow_tf32 is False  # no CUDA here: nothing to switch on
    tr = trainer(root, tmp_path, "bf16", 'precision.name="bf16"', "train.batch_size=4")
    result = tr.train_step(*tr.batches.next())
    assert tr.scaler is None and result.applied and torch.isfinite(result.grad_norm_before)
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())  # master weights stay fp32
