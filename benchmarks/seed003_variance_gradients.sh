#!/usr/bin/env bash
# Seed 003 §4.2-4.3 and §6.2 (docs/reproductions.md): the gradient that reaches a learned
# variance, for the direct sigma^2 head (run 1, eq. 4.2), the log sigma^2 head (run 2,
# eq. 4.4) and the learned range (run 10, Nichol & Dhariwal 2021), each trained at its
# recipe's budget with scalars every 50 steps (variance_gradient/* in metrics.jsonl), then
# measured by step t on the final checkpoint (difftk analyze variance-gradients).
#
#   bash benchmarks/seed003_variance_gradients.sh
#   python benchmarks/seed003_variance_gradients_table.py runs/seed003_vg
set -euo pipefail
out=${OUT:-runs/seed003_vg}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
for recipe in 01_direct_direct_vlb 02_direct_directlog_vlb 10_eps_learned_range_hybrid; do
  [ -f "$out/$recipe.csv" ] && continue
  difftk train "recipes/foundations/$recipe.toml" --set run.out_dir="\"$out\"" \
    --set run.name="\"$recipe\"" --set log.every=50 --set log.val_every=0 \
    --set log.sample_every=0 --set 'log.backends=["tensorboard", "jsonl"]' \
    > "$out/$recipe.train.log" 2>&1 || { echo "$recipe: training failed"; continue; }
  difftk analyze variance-gradients "$out/$recipe" --points 12 --samples 128 --no-ema \
    -o "$out/$recipe.png" --csv "$out/$recipe.csv" > "$out/$recipe.analyze.log" 2>&1
  echo "$recipe done"
done
