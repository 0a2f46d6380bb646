"""Summarise benchmarks/seed001_ema.sh: pixel FID per weights (raw, tracked EMA, post-hoc).

    python benchmarks/seed001_ema_table.py runs/seed001_ema

Writes <folder>/summary.json and prints a Markdown table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folder: str) -> None:
    root = Path(folder)
    rows = []
    for path in sorted(p for p in root.glob("*.eval.json") if p.stat().st_size):  # done ones
        ev = json.loads(path.read_text())
        rows.append({"weights": path.name[: -len(".eval.json")], "step": ev["step"],
                     "samples": ev["samples"], "pixel_fid": round(ev["metrics"]["pixel_fid"], 3),
                     "pixel_kid": round(ev["metrics"]["pixel_kid"], 5)})
    (root / "summary.json").write_text(json.dumps(rows, indent=1))
    print("| weights | step | samples | pixel FID | pixel KID |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['weights']} | {r['step']} | {r['samples']} | {r['pixel_fid']} | {r['pixel_kid']} |")


if __name__ == "__main__":
    main(sys.argv[1])
