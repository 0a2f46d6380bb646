"""difftk ema: post-hoc EMA from a run's snapshots (seed 001 §11.2; Karras et al. 2024)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from difftk.errors import DifftkError


def ema(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with snapshots/ "
                                                 "(train with ema.snapshot_every=N).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The averaged weights (.safetensors).")],
    beta: Annotated[float | None, typer.Option(
        help="Average the raw snapshots with weights proportional to beta^(N - i), i = 1..N "
             "counting snapshots (seed 001 §11.2 writes it per snapshot): with snapshots "
             "every K steps this is the per-step EMA of decay beta^(1/K).")] = None,
    per_step: Annotated[bool, typer.Option(
        "--per-step", help="Read --beta as a per-step decay: weight snapshot i by "
                           "beta^(s_N - s_i), s the snapshots' steps (any spacing).")] = False,
    sigma_rel: Annotated[float | None, typer.Option(
        "--sigma-rel", help="Reconstruct the power EMA of this relative width from power snapshots.")
    ] = None,
    step: Annotated[int | None, typer.Option(
        help="With --sigma-rel: the snapshot step to reconstruct at (default: the last).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Refuse a damaged or non-finite snapshot instead of leaving it out "
                         "with a warning.")] = False,
):
    """Combine saved snapshots into post-hoc EMA weights, by --beta or --sigma-rel.

    Writes one .safetensors file that difftk sample and difftk eval take in place of a
    checkpoint."""
    from difftk.eval.trained_model import weights_file_metadata
    from difftk.run.checkpoint_writing import save_weights
    from difftk.train.posthoc_ema import posthoc_beta, posthoc_sigma_rel

    if (beta is None) == (sigma_rel is None):
        raise DifftkError("give exactly one of --beta and --sigma-rel")
    if per_step and beta is None:
        raise DifftkError("--per-step reads --beta as a per-step decay; give --beta")
    if output.suffix != ".safetensors":
        raise DifftkError(f"{output}: the output must end in .safetensors")
    if beta is not None:
        if not 0 <= beta < 1:
            raise DifftkError(f"--beta must lie in [0, 1), got {beta}")
        state, info = posthoc_beta(run_dir, beta, strict, per_step)
    else:
        state, info = posthoc_sigma_rel(run_dir, sigma_rel, step, strict)
    last_step = info["step"] if "step" in info else info["steps"][-1]
    # the run's recipe and data spec travel in the file: difftk sample / eval load it alone
    metadata = weights_file_metadata(run_dir, last_step)
    save_weights(output, state, {"difftk_posthoc_ema": json.dumps(info), **metadata})
    what = (f"beta {beta}{' per step' if per_step else ' per snapshot'}" if beta is not None
            else f"sigma_rel {sigma_rel} at step {info['step']}")
    typer.echo(f"post-hoc EMA ({what}) from {len(info['coefficients'])} snapshot files -> {output}")
