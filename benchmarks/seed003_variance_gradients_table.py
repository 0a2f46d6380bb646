"""Summarise benchmarks/seed003_variance_gradients.sh: per run, the logged gradients by noise
level at the first and last logged steps, and the checkpoint's measurement by step t.

    python benchmarks/seed003_variance_gradients_table.py runs/seed003_vg

Writes <folder>/summary.json (committed as benchmarks/results/seed003_variance_gradients.json)
and prints one Markdown table.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def logged(run: Path) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item.get("tag", "").startswith(("variance_gradient/", "grad_norm/")):
            out.setdefault(item["tag"], {})[item["step"]] = item["value"]
    return out


def main(folder: str) -> None:
    root = Path(folder)
    summary = {}
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        scalars = logged(run)
        steps = sorted(scalars.get("variance_gradient/variance/all", {}))
        by_t = list(csv.DictReader((root / f"{run.name}.csv").open()))
        summary[run.name] = {
            "logged_steps": [steps[0], steps[-1]] if steps else [],
            "all_first": {k: scalars[f"variance_gradient/{k}/all"][steps[0]]
                          for k in ("head_output", "log_variance", "variance")} if steps else {},
            "all_last": {k: scalars[f"variance_gradient/{k}/all"][steps[-1]]
                         for k in ("head_output", "log_variance", "variance")} if steps else {},
            "clipped_fraction_mean": (sum(scalars["grad_norm/clipped_fraction"].values())
                                      / len(scalars["grad_norm/clipped_fraction"])),
            "by_t": [{k: float(v) for k, v in r.items()} for r in by_t],
        }
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    print("| run | t | median abs dL/dsigma^2 | median abs dL/dlog sigma^2 | head |")
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        for r in s["by_t"]:
            print(f"| {name} | {int(r['t'])} | {r['median_abs_d_variance']:.3g} | "
                  f"{r['median_abs_d_log_variance']:.3g} | {r['median_abs_d_head_output']:.3g} |")


if __name__ == "__main__":
    main(sys.argv[1])
