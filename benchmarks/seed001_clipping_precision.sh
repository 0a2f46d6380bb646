#!/usr/bin/env bash
# Seed 001 §10 (gradient clipping) and §12 (precision policies) on one diffusion run each
# (docs/reproductions.md): recipes/fashion_mnist/edm.toml with one part swapped, the same
# number of steps, scalars every 10 steps to metrics.jsonl (loss, gradient norm before and
# after clipping, clipped fraction, loss scale and overflow-skipped steps), then pixel FID of
# 1,000 EMA samples (difftk eval; SAMPLES=N for another number).
#
#   bash benchmarks/seed001_clipping_precision.sh [STEPS]
#   python benchmarks/seed001_clipping_precision_table.py runs/seed001_clip
#
# bf16 and fp16 are emulated (precision.emulate = true, nn/rounded_matmuls.py): every
# matmul's and convolution's operands, result and gradients rounded to the dtype, computed in
# fp32, since this CPU runs bf16 ~100x slower than fp32. fp16_unscaled keeps the loss scale
# at 1 for the whole run (growth_interval above the step count) to show what scaling prevents.
set -euo pipefail
steps=${1:-300}
out=${OUT:-runs/seed001_clip}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
variants=(
  "fp32_global_norm|"
  "fp32_no_clipping|--set clipping.name=\"none\""
  "fp32_agc|--set clipping.name=\"agc\""
  "bf16_global_norm|--set precision.name=\"bf16\" --set precision.emulate=true"
  "fp16_global_norm|--set precision.name=\"fp16\" --set precision.emulate=true"
  "fp16_unscaled|--set precision.name=\"fp16\" --set precision.emulate=true --set precision.init_scale=1.0 --set precision.growth_interval=1000000"
)
for v in "${variants[@]}"; do
  name=${v%%|*}
  sets=${v#*|}
  [ -f "$out/$name.eval.json" ] && continue
  eval "difftk train recipes/fashion_mnist/edm.toml --set run.out_dir='\"$out\"' \
    --set run.name='\"$name\"' --set train.steps=$steps --set train.time_limit=0 \
    --set log.val_every=0 --set log.sample_every=0 --set log.checkpoint_every=0 \
    --set log.every=10 --set 'log.backends=[\"tensorboard\", \"jsonl\"]' \
    --set log.num_samples=36 --set precision.name='\"fp32\"' $sets" > "$out/$name.train.log" 2>&1 \
    || { echo "$name: training failed (see $out/$name.train.log)"; continue; }
  difftk eval "$out/$name" -n "${SAMPLES:-1000}" --json > "$out/$name.eval.json" 2> "$out/$name.eval.err"
  echo "$name done"
done
