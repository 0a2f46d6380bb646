#!/usr/bin/env bash
# Seed 001 §11: what EMA and post-hoc EMA buy (docs/reproductions.md). One run of
# recipes/fashion_mnist/edm.toml with power-EMA snapshots (Karras et al. 2024, EDM2 §3), then
# pixel FID of 1,000 samples from the raw weights, from the EMA tracked during training
# (sigma_rel 0.05, the recipe's first; SAMPLES=N for another number of samples), and from post-hoc reconstructions over a sweep of
# sigma_rel (difftk ema --sigma-rel) and of per-step beta (difftk ema --beta --per-step).
#
#   bash benchmarks/seed001_ema.sh [STEPS] [SNAPSHOT_EVERY]
#   python benchmarks/seed001_ema_table.py runs/seed001_ema
set -euo pipefail
steps=${1:-600}
every=${2:-50}
out=${OUT:-runs/seed001_ema}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
run="$out/run"
if [ ! -f "$out/train.done" ]; then
  difftk train recipes/fashion_mnist/edm.toml --set run.out_dir="\"$out\"" --set run.name='"run"' \
    --set train.steps="$steps" --set train.time_limit=0 --set log.val_every=0 \
    --set log.sample_every=0 --set log.checkpoint_every=0 --set log.num_samples=36 \
    --set precision.name='"fp32"' --set ema.snapshot_every="$every" > "$out/train.log" 2>&1
  touch "$out/train.done"
fi
score() {  # name, then what to evaluate and its flags
  local name=$1; shift
  [ -f "$out/$name.eval.json" ] && return
  difftk eval "$@" -n "${SAMPLES:-1000}" --json > "$out/$name.eval.json" 2> "$out/$name.eval.err" \
    || { echo "$name: eval failed (see $out/$name.eval.err)"; rm -f "$out/$name.eval.json"; return; }
  echo "$name done"
}
score raw "$run" --no-ema
score tracked_sigma_rel_0.05 "$run"
for s in 0.02 0.05 0.10; do
  [ -f "$out/posthoc_sigma_rel_$s.safetensors" ] || \
    difftk ema "$run" --sigma-rel "$s" -o "$out/posthoc_sigma_rel_$s.safetensors" > /dev/null
  score "posthoc_sigma_rel_$s" "$out/posthoc_sigma_rel_$s.safetensors"
done
for b in 0.99; do
  [ -f "$out/beta_per_step_$b.safetensors" ] || \
    difftk ema "$run" --beta "$b" --per-step -o "$out/beta_per_step_$b.safetensors" > /dev/null
  score "beta_per_step_$b" "$out/beta_per_step_$b.safetensors"
done
