"""Summarise benchmarks/seed001_weightings.sh: one table and one figure.

    python benchmarks/seed001_summary.py runs/seed001 [runs/seed001_seed1 ...]

Reads each variant's <name>.eval.json (pixel FID, KID) and <name>.info.csv (the held-out
x0 MMSE at each logSNR, from difftk analyze information) and writes, in the first folder,
summary.csv, summary.md (a Markdown table) and denoising_error.png: the x0 error against
logSNR for every variant, and its ratio to EDM's weighting (below 1: that variant denoises
this noise level better than EDM's weighting after the same number of steps). Further
folders (other seeds of the same variants) add a pixel-FID column each and their mean.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REFERENCE = "weight_edm"


def read_error_curve(path: Path) -> tuple[list[float], list[float]]:
    """(logSNR, x0 MMSE) rows of an information CSV, in increasing logSNR."""
    rows = [r for r in csv.DictReader(path.open()) if r["target"] == "x0"]
    rows.sort(key=lambda r: float(r["log_snr"]))
    return [float(r["log_snr"]) for r in rows], [float(r["mmse"]) for r in rows]


def other_seed_fids(folders: tuple[str, ...], names: list[str]) -> dict[str, list[float | None]]:
    """Pixel FID of each variant in each further folder (None where it did not run)."""
    out = {}
    for name in names:
        found = []
        for folder in folders:
            path = Path(folder) / f"{name}.eval.json"
            found.append(round(json.loads(path.read_text())["metrics"]["pixel_fid"], 3)
                         if path.exists() else None)
        out[name] = found
    return out


def main(folder: str, *others: str) -> None:
    out = Path(folder)
    # A variant whose training or evaluation did not finish has no eval report: left out.
    names = sorted(p.name[: -len(".info.csv")] for p in out.glob("*.info.csv")
                   if (out / p.name.replace(".info.csv", ".eval.json")).exists())
    rows, curves = [], {}
    for name in names:
        ev = json.loads((out / f"{name}.eval.json").read_text())
        curves[name] = read_error_curve(out / f"{name}.info.csv")
        log_snr, mmse = curves[name]
        low = [m for s, m in zip(log_snr, mmse, strict=True) if s < -2]
        mid = [m for s, m in zip(log_snr, mmse, strict=True) if -2 <= s <= 2]
        high = [m for s, m in zip(log_snr, mmse, strict=True) if s > 2]
        rows.append({"variant": name, "step": ev["step"],
                     "pixel_fid": round(ev["metrics"]["pixel_fid"], 3),
                     "pixel_kid": round(ev["metrics"]["pixel_kid"], 5),
                     "x0_error_logsnr_below_-2": round(sum(low) / len(low), 5),
                     "x0_error_logsnr_-2_to_2": round(sum(mid) / len(mid), 5),
                     "x0_error_logsnr_above_2": round(sum(high) / len(high), 6)})
    extra = other_seed_fids(others, names)
    for r in rows:
        fids = [r["pixel_fid"]] + [v for v in extra[r["variant"]] if v is not None]
        for i, v in enumerate(extra[r["variant"]], start=1):
            r[f"pixel_fid_seed_{i}"] = v if v is not None else ""
        if others:
            r["pixel_fid_mean"] = round(sum(fids) / len(fids), 3)
    with (out / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    header = "| " + " | ".join(rows[0]) + " |"
    lines = [header, "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, (ax_abs, ax_rel) = plt.subplots(1, 2, figsize=(12, 4.5))
    ref = curves.get(REFERENCE)
    for name, (log_snr, mmse) in curves.items():
        style = "-" if name.startswith("weight_") else "--"
        ax_abs.plot(log_snr, mmse, style, label=name, linewidth=1.2)
        if ref is not None:
            ax_rel.plot(log_snr, [m / r for m, r in zip(mmse, ref[1], strict=True)], style, label=name,
                        linewidth=1.2)
    ax_abs.set(yscale="log", xlabel="logSNR", ylabel="held-out E||x0 - D(x_t)||^2 per pixel",
               title="Denoising error by noise level")
    ax_rel.set(yscale="log", xlabel="logSNR", ylabel=f"ratio to {REFERENCE}",
               title="Relative to EDM's weighting")
    ax_rel.axhline(1.0, color="grey", linewidth=0.8)
    for ax in (ax_abs, ax_rel):
        ax.grid(True, alpha=0.3)
    ax_rel.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "denoising_error.png", dpi=120)
    print(f"-> {out / 'summary.csv'}, {out / 'summary.md'}, {out / 'denoising_error.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:])
