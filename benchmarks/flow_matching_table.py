"""docs/flow_matching.md's tables from the runs' JSON lines: copies the rows of
benchmarks/flow_matching_study.sh and benchmarks/wave3_comparisons.sh from
runs/fmsearch/results.jsonl into benchmarks/results/flow_matching_study.jsonl (committed) and
prints the markdown tables.

    python benchmarks/flow_matching_table.py [runs/fmsearch/results.jsonl]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).parent / "results" / "flow_matching_study.jsonl"
KEEP = ("flow_study_", "digits_edm", "digits_ddpm")


def main() -> None:
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/fmsearch/results.jsonl")
    rows = {}
    for line in source.read_text().splitlines():
        row = json.loads(line)
        if row["name"].startswith(KEEP):
            rows[row["name"]] = {k: row[k] for k in ("name", "steps", "train_s", "eval_s",
                                                     "sets", "nfe_per_image", "metrics")}
    OUT.write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    print("| recipe | 440 steps (2 min) | 1,100 steps (5 min) | 2,200 steps (10 min) |")
    print("|---|---|---|---|")
    for recipe in ("edm", "rectified_flow", "sit"):
        cells = []
        for steps in (440, 1100, 2200):
            row = rows.get(f"flow_study_{recipe}_{steps}")
            cells.append(f"{row['metrics']['pixel_fid']:.2f}" if row else "not run")
        print(f"| `{recipe}` | " + " | ".join(cells) + " |")
    print()
    for name in ("digits_edm_weight", "digits_edm2_uncertainty", "digits_ddpm_uniform",
                 "digits_ddpm_loss_aware"):
        row = rows.get(name)
        if row:
            print(f"| {name} | {row['steps']} | {row['metrics']['pixel_fid']:.4f} | "
                  f"{row['nfe_per_image']} |")


if __name__ == "__main__":
    main()
