#!/usr/bin/env bash
# Best samples per CPU minute on Fashion-MNIST: train each candidate for the same wall time
# (train.time_limit, fp32 on this machine's cores), then score its EMA samples against the
# held-out split with pixel FID. Usage: bash benchmarks/fashion_mnist_study.sh [MINUTES] [N]
set -euo pipefail
minutes=${1:-10}
n=${2:-500}
out=runs/fmnist_study
common=(--set run.out_dir="\"$out\"" --set train.steps=100000
        --set train.time_limit=$minutes --set log.val_every=0 --set log.sample_every=0
        --set log.checkpoint_every=0 --set precision.name='"fp32"'
        --set ema.name='"ema_warmup"'
        --set noise_sampling.name='"log_normal"')  # as docs/architectures.md measured it
declare -A models=(
  [unet_fashion_mnist]='--set model.name="unet" --set model.preset="fashion_mnist"'
  [dit_p4_w192]='--set model.name="dit" --set model.preset="none" --set model.patch_size=4 --set model.hidden_size=192 --set model.depth=6 --set model.num_heads=3'
  [scorenet_medium]='--set model.name="scorenet" --set model.preset="medium"'
)
for name in unet_fashion_mnist dit_p4_w192 scorenet_medium; do
  eval "extra=(${models[$name]})"
  difftk train recipes/fashion_mnist/edm.toml "${common[@]}" --set run.name="\"$name\"" "${extra[@]}"
  difftk eval "$out/$name" -n "$n" --json > "$out/$name.eval.json"
  difftk eval "$out/$name" -n 64 --no-metrics --speed --samplers heun --json > "$out/$name.speed.json" || true
  echo "$name: $(cat "$out/$name.eval.json")"
done
