"""Seed 001 §5.2 on the digits DDPM recipe: min-SNR-5 weighting under uniform t against
uniform weight under t ~ min-SNR-5 (noise_sampling.name = "from_weighting"), for the
recipe's eps-prediction and for x0-prediction. Train the recipe for 300 steps with min-SNR-5,
then draw 200 minibatch gradients (64 images each) under each view at the same weights: the
same expected gradient within its Monte Carlo error, and each view's total variance tr Cov.

    python benchmarks/seed001_weighting_duality.py   # writes benchmarks/results/weighting_duality.json
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
from difftk.bench.machine import cpu_model  # noqa: E402


def main() -> None:
    import torch

    from difftk.analysis.weighting_duality import compare_views
    from difftk.diffusion.objective import Objective
    from difftk.plugins.noise_sampling import FromWeighting, UniformT
    from difftk.plugins.weights import MinSNR, Uniform
    from difftk.recipe import load_recipe
    from difftk.run.runtime import make_runtime
    from difftk.train.trainer import Trainer

    out = ROOT / "benchmarks/results/weighting_duality.json"
    rows = []
    for target in ("eps", "x0"):
        with tempfile.TemporaryDirectory() as tmp:
            recipe = load_recipe(ROOT / "recipes/ddpm.toml", [
                f'run.out_dir="{tmp}"', f'target.name="{target}"', 'weight.name="min_snr"',
                "weight.gamma=5.0", "train.steps=300", "log.val_every=0",
                "log.sample_every=0", "log.checkpoint_every=0", "log.tensorboard=false"],
                warn=False)
            trainer = Trainer(recipe, make_runtime("cpu"), progress=False)
            start = time.perf_counter()
            trainer.fit()
            denoiser = trainer.asm.denoiser.eval()
            data = trainer.data.train.float()
            weighting = Objective.for_denoiser(denoiser, MinSNR(gamma=5.0), UniformT(),
                                               recipe.parts["loss"])
            sampling = Objective.for_denoiser(
                denoiser, Uniform(relative_to="x0"),
                FromWeighting(weighting={"name": "min_snr", "gamma": 5.0}),
                recipe.parts["loss"])
            report = compare_views(denoiser, weighting, sampling, data, draws=200, batch=64)
            rows.append({"target": target, **asdict(report),
                         "variance_ratio": report.variance_ratio,
                         "seconds": round(time.perf_counter() - start, 1)})
    result = {"recipe": "recipes/ddpm.toml, weight min_snr gamma 5, 300 steps", "rows": rows,
              "cpu": cpu_model(), "torch": torch.__version__}
    out.write_text(json.dumps(result, indent=1) + "\n")
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
