#!/usr/bin/env bash
# Latent vs pixel diffusion on Fashion-MNIST at equal compute (seed 001 §5.3; docs/latents.md):
# train the KL autoencoder, then EDM in pixel space and on the autoencoder's [4, 7, 7] latents
# for the same wall-clock budget each, and score both by pixel FID of decoded samples against
# the held-out split. Also scores the autoencoder's own reconstructions (the floor a latent
# model can reach) and prints one table, saved as $out/summary.json.
# Usage: bash benchmarks/latent_vs_pixel.sh [MINUTES] [AE_STEPS] [N] [OUT]
#   full study (a quiet machine): bash benchmarks/latent_vs_pixel.sh 60 6000 2000
#   a smoke run:                   AE_SETS="--set autoencoder.width=8" \
#                                  bash benchmarks/latent_vs_pixel.sh 0.2 20 64 /tmp/lvp
# DIFFTK and PYTHON name the commands (default: difftk, python); AE_SETS adds --set options
# to train-autoencoder; AE_FROM=DIR reuses the autoencoder of an earlier study's OUT (DIR's
# latents_autoencoder_fashion_mnist/, copied into OUT) instead of training one. DATA_SETS adds
# --set options to both diffusion runs, e.g. the lazy path on a pack of Fashion-MNIST:
#   difftk data pack recipes/fashion_mnist/edm.toml -o data/fmnist
#   DATA_SETS='--set data.name="packed" --set data.path="data/fmnist" --set data.pipeline="loader"' \
#       bash benchmarks/latent_vs_pixel.sh 2 1000 1000
set -euo pipefail
minutes=${1:-60}
ae_steps=${2:-6000}
n=${3:-2000}
out=${4:-runs/latent_vs_pixel}
difftk=${DIFFTK:-difftk}
python=${PYTHON:-python}
read -r -a ae_sets <<< "${AE_SETS:-}"
read -r -a data_sets <<< "${DATA_SETS:-}"
mkdir -p "$out"
common=(--set run.out_dir="\"$out\"" --set train.time_limit=$minutes
        --set log.val_every=0 --set log.sample_every=0 --set log.checkpoint_every=0)

if [ -n "${AE_FROM:-}" ]; then
  if [ ! -f "$AE_FROM/latents_autoencoder_fashion_mnist/autoencoder.safetensors" ]; then
    echo "error: AE_FROM=$AE_FROM has no latents_autoencoder_fashion_mnist/autoencoder.safetensors" >&2
    exit 2
  fi
  rm -rf "$out/latents_autoencoder_fashion_mnist"
  cp -r "$AE_FROM/latents_autoencoder_fashion_mnist" "$out/"
else
  $difftk train-autoencoder recipes/latents/autoencoder_fashion_mnist.toml \
    --set run.out_dir="\"$out\"" --set autoencoder.steps=$ae_steps "${ae_sets[@]}" | tee "$out/autoencoder.log"
fi
weights="$out/latents_autoencoder_fashion_mnist/autoencoder.safetensors"

for side in pixels autoencoder; do
  extra=()
  [ "$side" = autoencoder ] && extra=(--set latents.weights="\"$weights\"")
  start=$(date +%s)
  $difftk train recipes/latents/fashion_mnist_$side.toml "${common[@]}" "${extra[@]}" "${data_sets[@]}" \
    | tee "$out/$side.train.log"
  echo $(( $(date +%s) - start )) > "$out/$side.seconds"
  $difftk eval "$out/latents_fashion_mnist_$side" -n "$n" --json > "$out/$side.eval.json"
done

$python - "$out" "$weights" "$n" <<'PY'
import json, sys
from pathlib import Path

import torch

from difftk.eval.metrics import sample_metrics
from difftk.latents.latents import decode_fp32
from difftk.recipe import component_from_spec

out, weights, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
data = component_from_spec("data", "fashion_mnist").load()
codec = component_from_spec("latents", f"autoencoder:weights={json.dumps(weights)}").build(
    lambda: data)
with torch.no_grad():
    recon = torch.cat([decode_fp32(codec, codec.encode(data.train[i:i + 500]))
                       for i in range(0, n, 500)])[:n]
floor = sample_metrics(recon, data.heldout, "image")["pixel_fid"]
ae = json.loads((Path(weights).with_suffix(".json")).read_text())
rows = {"autoencoder": {"train_seconds": ae["train_seconds"], "steps": ae["steps"],
                        "heldout_mse_per_pixel": ae["heldout_mse_per_pixel"],
                        "latent_std": ae["latent_std"],
                        "reconstruction_pixel_fid": floor}}
for side in ("pixels", "autoencoder"):
    run = out / f"latents_fashion_mnist_{side}"
    state = json.loads((run / "checkpoints/latest/state.json").read_text())
    rows[f"diffusion_{side}"] = {
        "steps": state["step"], "wall_seconds": int((out / f"{side}.seconds").read_text()),
        "latent_shape": state["spec"]["shape"],
        **json.loads((out / f"{side}.eval.json").read_text())["metrics"]}
(out / "summary.json").write_text(json.dumps(rows, indent=1))
for name, row in rows.items():
    print(f"{name:<24} " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in row.items()))
PY
