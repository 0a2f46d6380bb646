#!/usr/bin/env bash
# Seed 001 §6-§8 at one budget on Fashion-MNIST (docs/reproductions.md): the loss weightings
# and the noise-level distributions, each swapped into recipes/fashion_mnist/edm.toml from
# the command line, trained for the same number of steps, then scored by pixel FID (1,000
# Heun-18 EMA samples against the 10,000 test images, difftk eval) and by the held-out
# denoising error E||x0 - D(x_t)||^2 at 21 noise levels (difftk analyze information's MMSE
# column), which compares every weighting on one scale whatever it trained.
#
#   bash benchmarks/seed001_weightings.sh [STEPS] [SEED]
#   python benchmarks/seed001_summary.py runs/seed001 runs/seed001_seed1
#
# Weightings are applied to the x0-MSE (relative_to = "x0"), the one scale on which all of
# them are defined, except P2, which its paper defines on the eps-MSE (relative_to = "eps"),
# with EDM's preconditioned network and log-normal sigma (set here: the recipe itself draws
# logit-normal); the noise-level distributions keep EDM's weight. Every weighting with an
# SNR formula is trained; the flow-matching ones (sd3_*, sit_*) have their own study
# (flow_matching_study.sh). Writes OUT/<name>/ and <name>.{eval.json,info.csv}; OUT defaults
# to runs/seed001 for seed 0 and runs/seed001_seed<SEED> otherwise.
set -euo pipefail
steps=${1:-300}
seed=${2:-0}
if [ "$seed" = 0 ]; then out=${OUT:-runs/seed001}; else out=${OUT:-runs/seed001_seed$seed}; fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out"
variants=(
  "weight_edm|"
  "weight_uniform|--set weight.name=\"uniform\" --set weight.relative_to=\"x0\""
  "weight_snr|--set weight.name=\"snr\" --set weight.relative_to=\"x0\""
  "weight_snr_pow|--set weight.name=\"snr_pow\" --set weight.relative_to=\"x0\""
  "weight_log_snr|--set weight.name=\"log_snr\" --set weight.relative_to=\"x0\""
  "weight_min_snr|--set weight.name=\"min_snr\" --set weight.relative_to=\"x0\""
  "weight_max_snr|--set weight.name=\"max_snr\" --set weight.relative_to=\"x0\""
  "weight_snr_clip|--set weight.name=\"snr_clip\" --set weight.relative_to=\"x0\""
  "weight_p2|--set weight.name=\"p2\" --set weight.relative_to=\"eps\""
  "weight_soft_min_snr|--set weight.name=\"soft_min_snr\" --set weight.relative_to=\"x0\""
  "noise_logit_normal|--set noise_sampling.name=\"logit_normal\""
  "noise_log_uniform_sigma|--set noise_sampling.name=\"log_uniform_sigma\""
  "noise_uniform_sigma|--set noise_sampling.name=\"uniform_sigma\""
)
for v in "${variants[@]}"; do
  name=${v%%|*}
  sets=${v#*|}
  [ -f "$out/$name.info.csv" ] && continue
  eval "difftk train recipes/fashion_mnist/edm.toml --set run.out_dir='\"$out\"' \
    --set run.name='\"$name\"' --set train.steps=$steps --set train.time_limit=0 --set run.seed=$seed \
    --set log.val_every=0 --set log.sample_every=0 --set log.checkpoint_every=0 \
    --set log.num_samples=36 --set precision.name='\"fp32\"' \
    --set noise_sampling.name='\"log_normal\"' $sets" > "$out/$name.train.log" 2>&1 \
    || { echo "$name: training failed (see $out/$name.train.log)"; continue; }
  difftk eval "$out/$name" -n 1000 --json > "$out/$name.eval.json" 2> "$out/$name.eval.err"
  difftk analyze information "$out/$name" -o "$out/$name.info.png" --csv "$out/$name.info.csv" \
    --samples 256 --points 21 > /dev/null 2>&1
  echo "$name done"
done
