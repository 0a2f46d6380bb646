"""What drawing a 50,000-sample FID set costs beyond the network: wall time per network
evaluation of ``difftk sample -n 50000 --format png-dir`` against a bare forward.

Trains a run for one step (the network's speed does not depend on its weights), then, on
the same batch size, times (a) the bare forward the sampler makes, ``denoiser.x0_and_extra``
at one fixed noise level, NFE times per batch, and (b) the whole path: per-sample noise
streams, the sampler (Heun, 18 steps: 35 evaluations), pixels to 0-255 and one PNG per
sample, written atomically. Bare and whole batches are interleaved and medians compared.

    python benchmarks/sampling_overhead.py [--recipe recipes/edm.toml] [--n 50000]
        [--batch-size 256]

Writes benchmarks/results/sampling_overhead.json; docs/sampling.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from typer.testing import CliRunner

from difftk.bench.machine import cpu_model
from difftk.cli import app
from difftk.diffusion.sampler_model import GuidedModel
from difftk.eval.sample_set import SampleBatches, sample_png_dir
from difftk.eval.trained_model import load_trained_model
from difftk.recipe import sampler_with_overrides

OUT = Path(__file__).parent / "results" / "sampling_overhead.json"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(Path(__file__).parents[1] / "recipes/edm.toml"))
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=18)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp())
    res = CliRunner().invoke(app, ["train", args.recipe, "--no-progress", "--set",
                                   f'run.out_dir="{root}"', "--set", 'run.name="r"',
                                   "--set", "train.steps=1", "--set", "log.val_every=0",
                                   "--set", "log.tensorboard=false", "--set",
                                   "log.checkpoint_every=0"])
    assert res.exit_code == 0, (res.output, res.exception)
    torch.set_grad_enabled(False)
    device = torch.device("cpu")
    model = load_trained_model(root / "r", device, use_ema=False)
    sampler = sampler_with_overrides(model.recipe, "heun", args.steps, None, None)
    seen = {}
    original = GuidedModel._evaluate

    def capture(self, x_t, levels, labels):
        seen.setdefault("call", (x_t.clone(), levels, labels))
        return original(self, x_t, levels, labels)

    GuidedModel._evaluate = capture
    plan = SampleBatches(args.batch_size, args.batch_size)
    _, _, nfe = sample_png_dir(sampler, model, root / "warm", plan, 0, None, device,
                               model.recipe.parts["data"])
    GuidedModel._evaluate = original
    x, levels, labels = seen["call"]

    def bare_batch() -> float:
        start = time.perf_counter()
        for _ in range(nfe):
            model.denoiser.x0_and_extra(x, levels, labels)
        return time.perf_counter() - start

    whole_plan = SampleBatches(args.n, args.batch_size)
    batches = whole_plan.mine()
    bare_batch()  # its one-off costs out of the timing, as the warm batch took the sampler's
    bare, whole = [], []
    out = root / "samples"
    for i, indices in enumerate(batches):  # interleaved: one bare batch, one real batch
        if i % 8 == 0:
            bare.append(bare_batch())
        one = SampleBatches(args.n, args.batch_size)
        start = time.perf_counter()
        sample_png_dir(sampler, model, out, _Only(one, indices), 0, None, device,
                       model.recipe.parts["data"])
        whole.append(time.perf_counter() - start)
    full = [t for t, r in zip(whole, batches, strict=True) if len(r) == args.batch_size]
    bare_per_nfe = statistics.median(bare) / nfe
    whole_per_nfe = statistics.median(full) / nfe
    result = {"recipe": args.recipe, "n": args.n, "batch_size": args.batch_size,
              "sampler": f"heun, {args.steps} steps", "nfe_per_sample": nfe,
              "bare_forward_ms_per_nfe": 1e3 * bare_per_nfe,
              "sampling_ms_per_nfe": 1e3 * whole_per_nfe,
              "overhead": whole_per_nfe / bare_per_nfe - 1,
              "wall_seconds": sum(whole), "pngs": len(list(out.glob("*.png"))),
              "cpu": cpu_model(), "threads": torch.get_num_threads()}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


class _Only:
    """A plan of one batch of another plan (so each batch can be timed alone)."""

    def __init__(self, plan, indices):
        self.plan, self.indices = plan, indices

    def mine(self):
        return [self.indices]


if __name__ == "__main__":
    main()
