"""Emulated bf16/fp16 (nn/rounded_matmuls.py) against torch's own low-precision ops: the same
roundings of operands and results, gradients that underflow in fp16 as on a GPU, fp32
islands left alone, and the precision plugins' ``emulate`` switch in a training step."""

import torch
import torch.nn.functional as F

from difftk.nn.fp32 import fp32_region
from difftk.nn.rounded_matmuls import RoundedMatmuls, rounding_active
from difftk.plugins.precision import BF16, FP16


def test_a_linear_layer_equals_low_precision_operands_with_fp32_accumulation():
    torch.manual_seed(0)
    x, w, b = torch.randn(8, 64), torch.randn(32, 64), torch.randn(32)
    for dtype in (torch.bfloat16, torch.float16):
        with RoundedMatmuls(dtype):
            got = F.linear(x, w, b)
        # tensor cores: operands in the low dtype, products summed in fp32, result rounded
        want = F.linear(x.to(dtype).double(), w.to(dtype).double(), b.to(dtype).double())
        want = want.to(dtype).float()
        assert got.dtype == torch.float32
        # float32 accumulation may move a result across one rounding boundary at most
        ulp = (want.abs() * (2.0 ** -7 if dtype == torch.bfloat16 else 2.0 ** -10)).clamp_min(1e-6)
        assert ((got - want).abs() <= ulp).all(), dtype
        assert torch.equal(got, got.to(dtype).float()), "the result is representable in the dtype"
        assert not torch.equal(got, F.linear(x, w, b)), "nothing was rounded"


def test_convolutions_and_matmuls_are_rounded_elementwise_ops_are_not():
    x = torch.full((1, 1, 3, 3), 1.0 + 2.0 ** -12)      # not representable in bf16
    k = torch.ones(1, 1, 1, 1)
    with RoundedMatmuls(torch.bfloat16):
        assert torch.equal(F.conv2d(x, k), torch.ones(1, 1, 3, 3))
        assert torch.equal(x.flatten(1) @ torch.ones(9, 1), torch.full((1, 1), 9.0))
        assert torch.equal(x + 0, x), "elementwise ops run in fp32"


def test_fp16_gradients_underflow_without_a_loss_scale_and_survive_with_one():
    """Seed 001 §12.3: a gradient below fp16's subnormal range (6e-8) vanishes; multiplying the
    loss by S keeps it, and dividing by S afterwards gives the fp32 gradient back."""
    w = torch.full((4, 4), 0.5, requires_grad=True)
    x = torch.ones(2, 4)
    for scale, survives in ((1.0, False), (2.0 ** 16, True)):
        w.grad = None
        with RoundedMatmuls(torch.float16):
            out = F.linear(x, w)
        (out.sum() * 1e-9 * scale).backward()
        grad = w.grad / scale
        assert (grad.abs().max() > 0) == survives, scale
        if survives:
            assert torch.allclose(grad, torch.full((4, 4), 2e-9), rtol=1e-3)


def test_fp32_islands_pause_the_rounding():
    x = torch.full((2, 2), 1.0 + 2.0 ** -12)
    with RoundedMatmuls(torch.bfloat16):
        assert rounding_active()
        with fp32_region(x):
            assert not rounding_active()
            assert torch.equal(x @ torch.eye(2), x)
        assert rounding_active()
    assert not rounding_active()


def test_the_emulate_switch_selects_the_emulation_on_the_precision_plugins():
    cpu = torch.device("cpu")
    x = torch.full((2, 2), 1.0 + 2.0 ** -12)
    for policy in (BF16(emulate=True), FP16(emulate=True)):
        assert policy.emulated(cpu)
        with policy.autocast(cpu):
            out = x @ torch.eye(2)
        assert out.dtype == torch.float32 and not torch.equal(out, x)
    assert isinstance(BF16().autocast(cpu), torch.autocast)
    assert FP16(emulate=True).make_scaler(cpu) is not None
