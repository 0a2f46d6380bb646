"""The floors quoted beside pixel FID figures: what real images score against real images.

A generator's 1,000 samples cannot score below what 1,000 real images score under the same
protocol, so every quoted FID needs its floor from the same protocol:

- ``halves``: two disjoint random sets of n real test images (Parmar et al.'s and EDM's
  "split halves"), over several random splits;
- ``against_test``: n real training images (never in the test split) against all 10,000 test
  images, the protocol of ``difftk eval RUN -n 1000`` (docs/recipes.md), over several draws.

    python benchmarks/fid_floors.py [--n 1000] [--repeats 10]

Writes benchmarks/results/fid_floors.json; docs/recipes.md quotes its medians.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from difftk.bench.machine import cpu_model
from difftk.data.items import in_memory
from difftk.eval.metrics import pixel_fid
from difftk.registry import default_registry

OUT = Path(__file__).parent / "results" / "fid_floors.json"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    data = default_registry().get("datasets", "fashion_mnist").cls().load()
    train, test = in_memory(data.train), in_memory(data.heldout)
    g = torch.Generator().manual_seed(0)
    halves, against = [], []
    for _ in range(args.repeats):
        order = torch.randperm(len(test), generator=g)
        halves.append(pixel_fid(test[order[:args.n]], test[order[args.n:2 * args.n]]))
        pick = torch.randperm(len(train), generator=g)[:args.n]
        against.append(pixel_fid(train[pick], test))
    result = {
        "data": "fashion_mnist", "n": args.n, "repeats": args.repeats,
        "metric": "pixel FID, pixels in [0, 1] (difftk eval's)",
        "halves": {"median": float(np.median(halves)), "min": min(halves), "max": max(halves)},
        "against_test": {"median": float(np.median(against)), "min": min(against),
                         "max": max(against)},
        "cpu": cpu_model(),
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
