#!/usr/bin/env bash
# The GPU set of docs/performance.md in under 8 minutes on one GPU: the ddpm_cifar10 U-Net at
# 3x32x32, the fashion_mnist U-Net at 1x28x28, DiT-B/2 and DiT-XL/2 at 4x32x32 (256x256
# latents); images/s, MFU and peak memory of bf16 vs fp32, bf16 attention kernels
# (attention_fp32 = false), channels_last, fused vs foreach Adam, torch.compile on and off;
# profiler tables of DiT-XL/2 and ddpm_cifar10 in bf16. JSON (one file per row), each row's
# output and rows.json (the commands and their status) go to $OUT (default ./gpu-bench);
# the budget (BUDGET_S, default 450 s) stops starting new rows.
#
#   OUT=/tmp/gpu benchmarks/gpu_bench.sh && python benchmarks/performance.py tables /tmp/gpu
#   DIFFTK_BENCH_TINY=1 BUDGET_S=300 OUT=/tmp/tiny benchmarks/gpu_bench.sh  # every row shrunk: a CPU check
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-bench}"
export PYTHONPATH="${PYTHONPATH:-src}"
PYTHON="${PYTHON:-python}"
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,memory.total --format=csv > /dev/null 2>&1 \
  && mkdir -p "$OUT" && nvidia-smi --query-gpu=name,clocks.max.sm,power.limit,memory.total \
  --format=csv > "$OUT/gpu.csv"
"$PYTHON" benchmarks/performance.py gpu "$OUT" --budget "${BUDGET_S:-450}"
"$PYTHON" benchmarks/performance.py tables "$OUT" > "$OUT/tables.md"
for f in "$OUT"/*_profile.txt; do [ -f "$f" ] && { echo "== $f"; head -n 45 "$f"; }; done \
  > "$OUT/profile_summary.txt" || true
