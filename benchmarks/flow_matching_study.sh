#!/usr/bin/env bash
# docs/flow_matching.md's comparison: the EDM, rectified-flow and SiT recipes for
# Fashion-MNIST at the step counts of docs/recipes.md's 2, 5 and 10 CPU-minute budgets
# (440, 1,100 and 2,200 steps: the same network, so equal steps are equal compute), each
# scored by pixel FID of 1,000 samples at 35 network evaluations (Heun-18, flow Heun-18,
# flow SDE-35) against the 10,000 test images. Two lanes of one thread each; each run is
# benchmarks/fashion_mnist_search.sh and appends a line to runs/fmsearch/results.jsonl.
#
#   bash benchmarks/flow_matching_study.sh
set -euo pipefail
lane() {
  for steps in "$@"; do
    for recipe in edm rectified_flow sit; do
      RECIPE=recipes/fashion_mnist/$recipe.toml \
        bash benchmarks/fashion_mnist_search.sh "flow_study_${recipe}_$steps" "$steps"
    done
  done
}
lane 2200 &
lane 440 1100 &
wait
