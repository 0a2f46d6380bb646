#!/usr/bin/env bash
# A 2-"node" torchrun job on one machine: two torchrun invocations (--nnodes 2, one process
# each) meet at a rendezvous on 127.0.0.1, exactly as two machines would meet at
# HOST:PORT (static rendezvous: node 0 hosts it). Node 0 writes the run; the result equals
# a 1-process run of the same recipe (docs/distributed.md).
# Usage: [PYTHON=python] [OUT=runs/two_nodes] bash benchmarks/two_nodes_local.sh [RECIPE] [STEPS] [PORT] [--set ...]
set -euo pipefail
recipe=${1:-recipes/toy2d.toml}
steps=${2:-20}
port=${3:-29517}
out=${OUT:-runs/two_nodes}
common=("${@:4}" --no-progress --set run.out_dir="\"$out\"" --set run.name='"two_nodes"'
        --set train.steps=$steps --set log.every=5 --set log.val_every=0
        --set log.checkpoint_every=0 --set run.device='"cpu"')
launch() {  # $1: node rank
  "${PYTHON:-python}" -m torch.distributed.run --nnodes 2 --nproc-per-node 1 --node-rank "$1" \
    --rdzv-endpoint "127.0.0.1:$port" \
    -m difftk train "$recipe" "${common[@]}"
}
rm -rf "$out/two_nodes"; mkdir -p "$out"
launch 1 > "$out/node1.log" 2>&1 &
node1=$!
launch 0
wait "$node1"
echo "node 1 log: $out/node1.log; run: $out/two_nodes"
