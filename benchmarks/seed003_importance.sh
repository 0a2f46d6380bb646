#!/usr/bin/env bash
# Seed 003 eq. 1.29-1.30 (docs/reproductions.md): the likelihood of held-out images by
# importance sampling over whole forward trajectories, against the variational bound, on a
# trained t-space run (the digits DDPM of benchmarks/wave3_comparisons.sh by default):
# the closed-form bound (--nll-method bound) and the K-sample bound with the weights' spread
# (--nll-method importance), on the same held-out images.
#
#   bash benchmarks/seed003_importance.sh [RUN] [IMAGES] [K]
set -euo pipefail
run=${1:-runs/fmsearch/digits_ddpm_uniform}
images=${2:-64}
k=${3:-64}
out=${OUT:-benchmarks/results}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
name=$(basename "$run")
difftk eval "$run" --nll --nll-method bound --nll-samples "$images" --no-metrics --json \
  > "$out/${name}.bound_${images}.json"
difftk eval "$run" --nll --nll-method importance --trajectories "$k" --nll-samples "$images" \
  --no-metrics --json > "$out/${name}.importance_${images}x${k}.json"
