#!/usr/bin/env bash
# docs/flow_matching.md's guidance comparison: classifier-free guidance against autoguidance
# on recipes/fashion_mnist/edm_cfg.toml at 440 steps (the 2-minute budget of docs/recipes.md),
# one thread; the guide is the same run's checkpoint at step 110 (a quarter of its training,
# the "shorter-trained copy" of Karras et al. 2024a). Pixel FID of 1,000 Heun-18 samples
# against the 10,000 test images, one JSON line per setting in runs/fmsearch/guidance.jsonl.
#
#   bash benchmarks/guidance_study.sh
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
out=runs/fmsearch
name=guidance_cfg_440
mkdir -p "$out"
difftk train recipes/fashion_mnist/edm_cfg.toml --set run.out_dir="\"$out\"" \
  --set run.name="\"$name\"" --set train.steps=440 --set train.time_limit=0 \
  --set log.val_every=0 --set log.sample_every=0 --set log.checkpoint_every=110 \
  --set log.keep_last=5 --set precision.name='"fp32"' > "$out/$name.train.log" 2>&1
guide=$out/$name/checkpoints/00000110
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
