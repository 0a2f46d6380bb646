#!/usr/bin/env bash
# The GPU set of docs/performance.md in under 8 minutes on one GPU: DiT-B/2 and DiT-XL/2 at
# 4x32x32 (256x256 latents), the ddpm_cifar10 U-Net at 3x32x32; bf16 vs fp32, bf16 attention,
# channels_last, fused vs foreach Adam, torch.compile on and off; a profiler table of
# DiT-XL/2 in bf16. JSON (one file per row), each row's output and rows.json (the commands
# and their status) go to $OUT (default ./gpu-bench); the budget stops starting new rows.
#
#   OUT=/tmp/gpu benchmarks/gpu_bench.sh && python benchmarks/performance.py tables /tmp/gpu
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
