#!/usr/bin/env bash
# The comparisons of docs/flow_matching.md's last sections, each at a fixed step count, one
# thread, scored by pixel FID of 1,000 samples against the held-out split (difftk eval):
#
# 1. EDM's fixed weighting against EDM2's learned uncertainty weighting, recipes/edm.toml
#    (digits, 1,000 steps).
# 2. uniform t against improved-diffusion's loss-aware resampler, recipes/ddpm.toml (digits,
#    2,000 steps), FID of DDPM-1000 samples and the NLL bound on 297 held-out digits.
# 3. classifier-free guidance against autoguidance on recipes/fashion_mnist/edm_cfg.toml at
#    1,100 steps (the 5-minute budget); the guide is the same run's checkpoint at step 275.
#
#   bash benchmarks/wave3_comparisons.sh
# Appends JSON lines to runs/fmsearch/results.jsonl (1, 2) and runs/fmsearch/guidance.jsonl (3).
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
out=runs/fmsearch
name=guidance_cfg_1100
difftk train recipes/fashion_mnist/edm_cfg.toml --set run.out_dir="\"$out\"" \
  --set run.name="\"$name\"" --set train.steps=1100 --set train.time_limit=0 \
  --set log.val_every=0 --set log.sample_every=0 --set log.checkpoint_every=275 \
  --set log.keep_last=5 --set precision.name='"fp32"' > "$out/$name.train.log" 2>&1
guide=$out/$name/checkpoints/00000275
score() {  # tag, then difftk eval options
  tag=$1; shift
  difftk eval "$out/$name" -n 1000 --json "$@" > "$out/$name.$tag.json" 2> "$out/$name.$tag.err"
  python - "$tag" "$out/$name.$tag.json" "$*" <<'PY' >> "$out/guidance.jsonl"
import json, sys
tag, path, options = sys.argv[1:4]
ev = json.load(open(path))
print(json.dumps({"tag": tag, "options": options, "fid": ev["metrics"]["pixel_fid"],
                  "nfe": ev["nfe_per_image"]}))
PY
}
score plain --guidance 1
score cfg_1.5 --guidance 1.5
score auto_1.5 --guidance 1.5 --guide "$guide"
score auto_2 --guidance 2 --guide "$guide"
score auto_2_interval --guidance 2 --guide "$guide" --set sampler.guidance_sigma_min=0.28 \
  --set sampler.guidance_sigma_max=5.42
