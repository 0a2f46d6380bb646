"""Summarise benchmarks/seed001_clipping_precision.sh: one row per run.

    python benchmarks/seed001_clipping_precision_table.py runs/seed001_clip

From each run's metrics.jsonl (scalars every 10 steps) and <name>.eval.json: the training
loss over the last quarter of the run, the gradient norm before clipping (median of the
logged window means) and its distortion by clipping (mean of after / before), the clipped
fraction of steps, the loss scale at the end and the steps skipped on overflow (fp16), and
the pixel FID. Writes <folder>/summary.json and prints a Markdown table.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def scalars(run: Path) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        item = json.loads(line)
        if "value" in item:
            out.setdefault(item["tag"], {})[item["step"]] = item["value"]
    return out


def row(folder: Path, name: str) -> dict:
    s = scalars(folder / name)
    loss = s["loss/train"]
    steps = sorted(loss)
    last = [loss[k] for k in steps[len(steps) * 3 // 4:]]
    before, after = s["grad_norm/before_clip"], s["grad_norm/after_clip"]
    ev = json.loads((folder / f"{name}.eval.json").read_text())
    out = {"run": name, "steps": steps[-1],
           "loss_last_quarter": round(statistics.fmean(last), 4),
           "grad_norm_before_median": round(statistics.median(before.values()), 3),
           "norm_kept_after_clip": round(statistics.fmean(after[k] / before[k] for k in before
                                                          if before[k] > 0), 3),
           "clipped_fraction": round(statistics.fmean(s["grad_norm/clipped_fraction"].values()), 3),
           "pixel_fid": round(ev["metrics"]["pixel_fid"], 2), "samples": ev["samples"]}
    if "loss_scale" in s:
        out["loss_scale_end"] = s["loss_scale"][steps[-1]]
        out["overflow_skipped_steps"] = s["precision/overflow_skipped_steps"][steps[-1]]
    return out


def main(folder: str) -> None:
    root = Path(folder)
    # a run still evaluating (empty report) or never trained is left out
    names = sorted(p.name[: -len(".eval.json")] for p in root.glob("*.eval.json")
                   if p.stat().st_size and (root / p.name[: -len(".eval.json")] /
                                            "metrics.jsonl").exists())
    rows = [row(root, n) for n in names]
    (root / "summary.json").write_text(json.dumps(rows, indent=1))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "-")) for k in keys) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
