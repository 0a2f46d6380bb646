"""Every figure of docs/performance.md, one ``difftk bench`` process per row.

    python benchmarks/performance.py cpu OUT_DIR [--only NAME ...]   # the CPU tables
    python benchmarks/performance.py gpu OUT_DIR [--budget SECONDS]  # the GPU set (gpu_bench.sh)
    DIFFTK_BENCH_TINY=1 python benchmarks/performance.py gpu OUT_DIR # the same rows, tiny (a CPU check)
    python benchmarks/performance.py tables OUT_DIR                  # markdown from the JSON

Each row is ``difftk bench`` with ``--json OUT_DIR/<row>.json`` in a fresh process (so one
row's allocator state, compiled graphs and threads never leak into the next), on random
data of the row's shape (the same tensor for difftk, the raw loop and diffusers). Run it
on a quiet machine: every subject is interleaved step by step, but a busy machine still
widens the spread. ``tables`` prints the tables the docs hold, with the command of each row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A small 3-level U-Net (widths divisible by 32 so diffusers' UNet2DModel holds it).
SMALL_UNET_CONVS = ["model.preset=none", "model.channels=32", "model.channel_mult=[1, 2, 2]",
                    "model.num_res_blocks=1"]
SMALL_UNET = SMALL_UNET_CONVS + ["model.attention_resolutions=[8]"]
FP32 = ["precision.name=fp32"]
# The DiT paper's B/2 and XL/2 (Peebles & Xie 2023, table 1), stated in full because the
# dit recipe's own fields override a preset; sin-cos positions, no QK-norm, as published.
DIT = {tag: ["model.patch_size=2", f"model.hidden_size={width}", f"model.depth={depth}",
             f"model.num_heads={heads}", "model.position=sincos", "model.qk_norm=false"]
       for tag, width, depth, heads in (("ditb2", 768, 12, 12), ("ditxl2", 1152, 28, 16))}


def row(name, recipe, shape, batch, sets=(), compare="", extra=(), steps=20, warmup=5):
    return {"name": name, "recipe": recipe, "shape": shape, "batch": batch, "sets": list(sets),
            "compare": compare, "extra": list(extra), "steps": steps, "warmup": warmup}


def cpu_rows() -> list[dict]:
    arch = "recipes/architectures"
    rows = [
        row("cpu_unet_small", f"{arch}/unet.toml", "3,32,32", 64, SMALL_UNET + FP32,
            "raw,diffusers"),
        row("cpu_unet_ddpm_cifar10", "recipes/cifar10/ddpm.toml", "3,32,32", 16, FP32,
            "raw,diffusers", steps=10, warmup=3),
        row("cpu_dit_small", f"{arch}/dit.toml", "3,32,32", 64, FP32, "raw"),
        row("cpu_scorenet", f"{arch}/scorenet.toml", "3,32,32", 64, FP32, "raw"),
        row("cpu_mlp_toy2d", "recipes/toy2d.toml", "2", 512, FP32, "raw"),
    ]
    rows += [row(f"cpu_batch_{b}", f"{arch}/unet.toml", "3,32,32", b, SMALL_UNET + FP32)
             for b in (8, 16, 32, 64, 128)]
    rows += [row(f"cpu_resolution_{r}", f"{arch}/unet.toml", f"3,{r},{r}", 16,
                 SMALL_UNET_CONVS + FP32 + ["model.attention_resolutions=[]"])
             for r in (16, 32, 64)]
    rows += [row(f"cpu_adam_{impl}", f"{arch}/unet.toml", "3,32,32", 64,
                 SMALL_UNET + FP32 + [f"optimizer.implementation={impl}"])
             for impl in ("for_loop", "foreach", "fused")]
    # The sampler's cost per evaluation does not depend on how many steps it takes:
    # 50 ancestral steps instead of the recipe's T keep the row short.
    rows += [row("cpu_sampling_edm_heun", "recipes/edm.toml", "1,8,8", 64, FP32,
                 extra=["--sampling"], steps=10),
             row("cpu_sampling_ddpm_ancestral", "recipes/ddpm.toml", "1,8,8", 64,
                 FP32 + ["sampler.steps=50"], extra=["--sampling"], steps=10)]
    return rows


def gpu_rows() -> list[dict]:
    """The GPU set, cheapest first, so a budget cut drops the least informative rows: per
    architecture fp32 vs bf16, bf16 attention kernels (attention_fp32 = false: SDPA's flash
    / memory-efficient kernels), channels_last for the U-Nets, torch.compile, Adam kernels,
    and one profiler table per architecture family."""
    dit, ddpm = "recipes/architectures/dit.toml", "recipes/cifar10/ddpm.toml"
    fashion = "recipes/fashion_mnist/edm.toml"
    bf16, flash = ["precision.name=bf16"], ["model.attention_fp32=false"]
    rows = []
    for tag, recipe, shape, batch, base, compare in (
            ("ddpm_cifar10", ddpm, "3,32,32", 128, [], "raw,diffusers"),
            ("fashion", fashion, "1,28,28", 256, [], "raw,diffusers")):
        rows += [row(f"gpu_{tag}_bf16", recipe, shape, batch, base + bf16, compare),
                 row(f"gpu_{tag}_fp32", recipe, shape, batch, base + FP32, compare),
                 row(f"gpu_{tag}_bf16_attention_bf16", recipe, shape, batch, base + bf16 + flash),
                 row(f"gpu_{tag}_bf16_channels_last", recipe, shape, batch,
                     base + bf16 + flash + ["model.channels_last=true"])]
    for tag, batch in (("ditb2", 256), ("ditxl2", 64)):
        base = DIT[tag]
        rows += [row(f"gpu_{tag}_bf16", dit, "4,32,32", batch, base + bf16, "raw"),
                 row(f"gpu_{tag}_fp32", dit, "4,32,32", batch, base + FP32),
                 row(f"gpu_{tag}_bf16_attention_bf16", dit, "4,32,32", batch, base + bf16 + flash)]
    rows += [row(f"gpu_ddpm_cifar10_bf16_adam_{impl}", ddpm, "3,32,32", 128,
                 bf16 + [f"optimizer.implementation={impl}"]) for impl in ("foreach", "fused")]
    profile = ["--split-steps", "0"]
    rows += [row("gpu_ditxl2_bf16_profile", dit, "4,32,32", 64, DIT["ditxl2"] + bf16 + flash,
                 steps=5, warmup=3, extra=profile),
             row("gpu_ddpm_cifar10_bf16_profile", ddpm, "3,32,32", 128, bf16 + flash,
                 steps=5, warmup=3, extra=profile)]
    compiled = ["train.compile=true"]
    rows += [row("gpu_ditb2_bf16_compile", dit, "4,32,32", 256, DIT["ditb2"] + bf16 + flash + compiled,
                 "raw", warmup=8),
             row("gpu_ddpm_cifar10_bf16_compile", ddpm, "3,32,32", 128, bf16 + flash + compiled,
                 "raw", warmup=8),
             row("gpu_fashion_bf16_compile", fashion, "1,28,28", 256, bf16 + flash + compiled,
                 warmup=8),
             row("gpu_ditxl2_bf16_compile", dit, "4,32,32", 64, DIT["ditxl2"] + bf16 + flash + compiled,
                 warmup=8)]
    return rows


# DIFFTK_BENCH_TINY=1: every row shrunk to seconds (a 1-block, narrow network, batch 4, two
# measured steps) so the GPU script can be checked end to end on a CPU.
TINY_ENV = "DIFFTK_BENCH_TINY"
TINY_SETS = {"dit": ["model.hidden_size=64", "model.depth=1", "model.num_heads=2"],
             "unet": ["model.channels=32", "model.channel_mult=[1, 2]", "model.num_res_blocks=1",
                      "model.attention_resolutions=[]"]}


def tiny(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        kind = "dit" if "dit" in r["recipe"] else "unet"
        sets = [s for s in r["sets"] if not s.startswith("train.compile")]
        extra = [e for e in r["extra"] if e not in ("--split-steps", "0")] + ["--split-steps", "1"]
        out.append(dict(r, sets=sets + TINY_SETS[kind], batch=4, steps=2, warmup=1, extra=extra))
    return out


def command(r: dict, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "difftk.cli", "bench", r["recipe"], "--shape", r["shape"],
           "--batch", str(r["batch"]), "--steps", str(r["steps"]), "--warmup", str(r["warmup"]),
           "--json", str(out / f"{r['name']}.json")]
    for s in r["sets"]:
        cmd += ["--set", s]
    if r["compare"]:
        cmd += ["--compare", r["compare"]]
    if r["name"].endswith("_profile"):
        cmd += ["--profile", str(out / f"{r['name']}.txt")]
    return cmd + r["extra"]


def shown(cmd: list[str]) -> str:
    """The command as a reader types it."""
    words = ["difftk"] + cmd[3:]
    return " ".join(f'"{w}"' if " " in w else w for w in words)


def run(rows: list[dict], out: Path, budget: float | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    start, log = time.monotonic(), []
    for r in rows:
        left = None if budget is None else budget - (time.monotonic() - start)
        cmd = command(r, out)
        if left is not None and left < 20:
            log.append({"row": r["name"], "command": shown(cmd), "status": "skipped: budget"})
            continue
        print(f"[{time.monotonic() - start:6.0f}s] {r['name']}", flush=True)
        try:
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  timeout=None if left is None else left)
            status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-500:]}"
            (out / f"{r['name']}.txt" if not r["name"].endswith("_profile")
             else out / f"{r['name']}.log").write_text(done.stdout + done.stderr)
        except subprocess.TimeoutExpired:
            status = "timed out"
        log.append({"row": r["name"], "command": shown(cmd), "status": status})
        (out / "rows.json").write_text(json.dumps(log, indent=1) + "\n")
    (out / "rows.json").write_text(json.dumps(log, indent=1) + "\n")


def tables(out: Path) -> None:
    """Markdown rows of every measured JSON in ``out``."""
    print("| row | model | batch | shape | difftk img/s | raw img/s | diffusers img/s | vs raw "
          "| vs diffusers | GFLOP/img (train) | MFU | peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for path in sorted(out.glob("*.json")):
        if path.name == "rows.json":
            continue
        f = json.loads(path.read_text())
        s, ratios = f["subjects"], f["ratios"]
        d = s["difftk"]

        def ips(name, s=s):
            return f"{s[name]['images_per_s']:.1f}" if name in s else "-"

        def ratio(name, ratios=ratios):
            return f"{ratios[name]['images_per_s_ratio']:.3f}x" if name in ratios else "-"

        mfu = "-" if d["mfu"] is None else f"{100 * d['mfu']:.1f}%"
        mem = "-" if d["peak_memory_bytes"] is None else f"{d['peak_memory_bytes'] / 2**20:.0f}"
        print(f"| {path.stem} | {f['model']} {d['parameters'] / 1e6:.2f}M | {f['batch']} | "
              f"{'x'.join(map(str, f['shape']))} | {ips('difftk')} | {ips('raw')} | "
              f"{ips('diffusers')} | {ratio('raw')} | {ratio('diffusers')} | "
              f"{d['training_flops_per_image'] / 1e9:.3f} | {mfu} | {mem} |")
        if f.get("sampling"):
            sm = f["sampling"]
            print(f"|   sampling {sm['sampler']} | per evaluation {1e3 * sm['seconds_per_evaluation']:.2f}"
                  f" ms vs bare forward {1e3 * sm['bare_forward_seconds']:.2f} ms "
                  f"({100 * sm['overhead']:+.1f}%) |")


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in ("cpu", "gpu", "tables"):
        sys.exit(__doc__)
    out = Path(argv[1])
    if argv[0] == "tables":
        tables(out)
        return
    rows = cpu_rows() if argv[0] == "cpu" else gpu_rows()
    if os.environ.get(TINY_ENV):
        rows = tiny(rows)
    if "--only" in argv:
        wanted = set(argv[argv.index("--only") + 1:])
        rows = [r for r in rows if r["name"] in wanted]
    budget = float(argv[argv.index("--budget") + 1]) if "--budget" in argv else None
    run(rows, out, budget)


if __name__ == "__main__":
    main(sys.argv[1:])
