#!/usr/bin/env bash
# The comparisons of docs/flow_matching.md's last sections, each at a fixed step count, one
# thread, scored by pixel FID of 1,000 samples against the held-out split (difftk eval):
#
# 1. EDM's fixed weighting against EDM2's learned uncertainty weighting, recipes/edm.toml
#    (digits, 1,000 steps).
# 2. uniform t against improved-diffusion's loss-aware resampler, recipes/ddpm.toml (digits,
#    2,000 steps), FID of DDPM-1000 samples and the NLL bound on 297 held-out digits.
# (Classifier-free guidance against autoguidance: benchmarks/guidance_study.sh.)
#
#   bash benchmarks/wave3_comparisons.sh
# Appends JSON lines to runs/fmsearch/results.jsonl; the NLL reports go to
# runs/fmsearch/<run>.nll.json.
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
search=benchmarks/fashion_mnist_search.sh
RECIPE=recipes/edm.toml bash $search digits_edm_weight 1000
RECIPE=recipes/edm.toml bash $search digits_edm2_uncertainty 1000 --set 'weight.name="edm2_uncertainty"'
RECIPE=recipes/ddpm.toml bash $search digits_ddpm_uniform 2000
RECIPE=recipes/ddpm.toml bash $search digits_ddpm_loss_aware 2000 --set 'noise_sampling.name="loss_second_moment"'
for run in digits_ddpm_uniform digits_ddpm_loss_aware; do
  difftk eval runs/fmsearch/$run --no-metrics --nll --nll-samples 297 --json \
    > runs/fmsearch/$run.nll.json
done
