"""What ``model.channels_last = "auto"`` and ``train.compile = "auto"`` should choose on the
CPU, and the CPU Adam implementations: the digits U-Net of recipes/edm.toml (batch 128, fp32)
copied four ways (eager or torch.compile, NCHW or channels_last), each training step
(forward, MSE, backward, Adam) and each forward alone timed interleaved with the others,
medians of the paired ratios to eager NCHW; then the optimizer step alone for torch's
for_loop, foreach and fused Adam. Run it on a quiet machine; it writes
benchmarks/results/cpu_switches.json, which nn/auto_speed.py's rule follows.

    python benchmarks/cpu_switches.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from difftk.bench.machine import cpu_model  # noqa: E402
from difftk.nn.architecture import DataSpec  # noqa: E402
from difftk.registry import default_registry  # noqa: E402

OUT = Path(__file__).parent / "results" / "cpu_switches.json"


def _network(channels_last: bool):
    unet = default_registry().get("architectures", "unet").cls
    torch.manual_seed(0)
    return unet(preset="digits", channels_last=channels_last).build(DataSpec((1, 8, 8), 1))


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    x, t = torch.randn(128, 1, 8, 8), torch.rand(128)
    variants = {}
    for name, compiled, nhwc in (("eager_nchw", False, False), ("eager_channels_last", False, True),
                                 ("compile_nchw", True, False),
                                 ("compile_channels_last", True, True)):
        net = _network(nhwc)
        forward = torch.compile(net) if compiled else net
        opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True)

        def step(forward=forward, opt=opt):
            loss = (forward(x, t) - x).square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def infer(forward=forward):
            with torch.no_grad():
                forward(x, t)

        first = _timed(step) + _timed(step)  # the compile, where there is one
        variants[name] = {"step": step, "infer": infer, "first_two_steps_s": first,
                          "step_s": [], "forward_s": []}
    for _ in range(args.repeats):  # interleaved: load slows every variant alike
        for v in variants.values():
            v["step_s"].append(_timed(v["step"]))
            v["forward_s"].append(_timed(v["infer"]))
    base = variants["eager_nchw"]
    rows = {}
    for name, v in variants.items():
        steps = zip(v["step_s"], base["step_s"], strict=True)
        forwards = zip(v["forward_s"], base["forward_s"], strict=True)
        rows[name] = {
            "training_step_ratio": statistics.median(a / b for a, b in steps),
            "forward_ratio": statistics.median(a / b for a, b in forwards),
            "median_step_s": statistics.median(v["step_s"]),
            "first_two_steps_s": round(v["first_two_steps_s"], 1)}
    adam = {}
    net = _network(False)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    optimizers = {"for_loop": torch.optim.Adam(net.parameters(), foreach=False),
                  "foreach": torch.optim.Adam(net.parameters(), foreach=True),
                  "fused": torch.optim.Adam(net.parameters(), fused=True)}
    times = {k: [] for k in optimizers}
    for _ in range(args.repeats * 5):
        for k, opt in optimizers.items():
            times[k].append(_timed(opt.step))
    for k in optimizers:
        adam[k] = statistics.median(a / b for a, b in zip(times[k], times["for_loop"], strict=True))
    report = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "network": "unet preset digits, batch 128, fp32", "repeats": args.repeats,
              "variants": rows, "adam_step_ratio_to_for_loop": adam}
    OUT.write_text(json.dumps(report, indent=1) + "\n")
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
