#!/usr/bin/env bash
# Seed 004 Coding I.9 vs Coding II: pixel FID of mean matching (the network outputs the
# reverse mean mu = rho0 (x - rho1 delta)) against the ELBO-weighted eps loss, both with the
# seed's ScoreNet (preset small, [8, 16, 32, 64]) and its settings: linear betas 1e-4..0.1
# over T = 200, Adam lr 0.01 (rho0, rho1 at 0.2), StepLR x0.1 at half the steps (the seed:
# epoch 30 of 60), batch 100, no clipping, no EMA, ancestral sampling with variance beta_t.
# The seed measured 12.61 (Coding I.9) and 5.06 (Coding II) on MNIST after 60 epochs of
# 50,000 images (30,000 steps); here Fashion-MNIST, scored by `difftk eval RUN -n N` (pixels
# in [0, 1] against the held-out split, eval/metrics.py).
# Usage: bash benchmarks/seed004_fid.sh STEPS [N] [OUT]
#   e.g.:        bash benchmarks/seed004_fid.sh 1000 1000 runs/seed004_fid
#   a smoke run: EXTRA_SETS="--set model.channels=[4,4,4,4] --set model.embed_dim=8" \
#                bash benchmarks/seed004_fid.sh 2 16 /tmp/seed004_fid
# Prints one JSON line per run (OUT/RUN.fid.json; OUT/fid.jsonl gathers all of OUT's runs).
# DIFFTK and PYTHON name the commands (default: difftk, python); EXTRA_SETS adds --set options
# to both trainings; RUNS picks the runs (default both: "01_mean_matching 02_eps_elbo_weight",
# so that two shells can train one each on two cores); CURVE_EVERY=K keeps a checkpoint every
# K steps and scores each one as well (OUT/RUN.curve.jsonl: pixel FID against steps).
set -euo pipefail
steps=${1:?usage: seed004_fid.sh STEPS [N] [OUT]}
n=${2:-1000}
out=${3:-runs/seed004_fid}
difftk=${DIFFTK:-difftk}
python=${PYTHON:-python}
read -r -a extra_sets <<< "${EXTRA_SETS:-}"
case "$steps" in ''|*[!0-9]*|0) echo "error: STEPS must be a positive whole number (got \"$steps\")" >&2; exit 2;; esac
mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
decay=$(( steps / 2 > 0 ? steps / 2 : 1 ))
seed_settings=(--set data.name=fashion_mnist --set model.name=scorenet --set model.preset=small
  --set optimizer.name=adam --set optimizer.lr=0.01 --set lr_schedule.name=step
  --set lr_schedule.gamma=0.1 --set lr_schedule.step_size=$decay --set clipping.name=none
  --set ema.name=none --set train.batch_size=100 --set train.steps=$steps
  --set log.val_every=0 --set log.sample_every=0 --set log.checkpoint_every=0
  --set run.out_dir="\"$out\"")
curve_every=${CURVE_EVERY:-0}
case "$curve_every" in ''|*[!0-9]*) echo "error: CURVE_EVERY must be a whole number (got \"$curve_every\")" >&2; exit 2;; esac
curve_sets=(--set log.checkpoint_every=$curve_every --set log.keep_last=$(( curve_every > 0 ? steps / curve_every + 1 : 3 )))
for run in ${RUNS:-01_mean_matching 02_eps_elbo_weight}; do
  case "$run" in 01_mean_matching|02_eps_elbo_weight) ;;
    *) echo "error: RUNS names 01_mean_matching and 02_eps_elbo_weight, not \"$run\"" >&2; exit 2;; esac
  model=()
  # Coding I.2's learned output map for mean matching; Coding II's network outputs eps.
  [ "$run" = 01_mean_matching ] && model=(--set model.mean_scaling=true --set model.rho_lr_multiplier=20)
  start=$(date +%s)
  $difftk train "$here/recipes/final_project/$run.toml" "${seed_settings[@]}" \
    "${model[@]}" "${curve_sets[@]}" --set run.name="\"seed004-$run\"" "${extra_sets[@]}" \
    > "$out/$run.train.log"
  seconds=$(( $(date +%s) - start ))
  $difftk eval "$out/seed004-$run" -n "$n" --no-ema --json > "$out/$run.eval.json"
  # The seed samples without clipping; DDPM's own sampler clamps each x0 estimate to the data
  # range (sampler.clip_denoised), scored beside it.
  $difftk eval "$out/seed004-$run" -n "$n" --no-ema --json --set sampler.clip_denoised=true \
    > "$out/$run.eval_clipped.json"
  $python - "$out/$run.eval.json" "$out/$run.eval_clipped.json" "$run" "$steps" "$seconds" \
    <<'PY' | tee "$out/$run.fid.json"
import json, sys
report, clipped = (json.load(open(p)) for p in sys.argv[1:3])
seed_fid = {"01_mean_matching": 12.6141, "02_eps_elbo_weight": 5.0627}[sys.argv[3]]
print(json.dumps({"recipe": f"recipes/final_project/{sys.argv[3]}.toml", "data": "fashion_mnist",
                  "steps": int(sys.argv[4]), "train_seconds": int(sys.argv[5]),
                  "samples": report["samples"], "pixel_fid": report["metrics"]["pixel_fid"],
                  "pixel_kid": report["metrics"]["pixel_kid"],
                  "pixel_fid_clipped": clipped["metrics"]["pixel_fid"],
                  "seed_pixel_fid_mnist": seed_fid}))
PY
  if [ "$curve_every" -gt 0 ]; then
    : > "$out/$run.curve.jsonl"
    for ckpt in "$out/seed004-$run"/checkpoints/[0-9]*; do
      report="$out/$run.eval.json"  # the last checkpoint is the model scored above
      if [ "$((10#${ckpt##*/}))" -ne "$steps" ]; then
        report="$out/$run.curve.eval.json"
        $difftk eval "$ckpt" -n "$n" --no-ema --json > "$report"
      fi
      $python - "$report" "$ckpt" <<'PY' | tee -a "$out/$run.curve.jsonl"
import json, sys
report = json.load(open(sys.argv[1]))
print(json.dumps({"steps": int(sys.argv[2].rstrip("/").rsplit("/", 1)[1]),
                  "pixel_fid": report["metrics"]["pixel_fid"]}))
PY
    done
  fi
done
cat "$out"/*.fid.json > "$out/fid.jsonl"
