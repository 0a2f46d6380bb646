#!/usr/bin/env bash
# Seed 003 Tables 5.1 and 6.1 (runs 1-9) and the learned-range hybrid of §6.2, on
# Fashion-MNIST 28x28 (docs/reproductions.md): each recipes/foundations/ recipe with the data
# set swapped, the narrow U-Net of recipes/fashion_mnist/edm.toml (16/32/64 channels), the
# same number of steps for every run; learning curves of NLL and mean MSE at log.eval_every;
# then held-out loss, NLL bits/dim and mean MSE of the EMA model on the first --heldout
# test images (benchmarks/measure_recipes.py), and `difftk compare` over all runs.
#
#   bash benchmarks/seed003_tables.sh [STEPS] [BATCH] [HELDOUT]
#
# Writes runs/seed003/<run name>/ (TensorBoard, metrics.jsonl), runs/seed003/results/
# <run name>.json and .png, and runs/seed003/compare/ (table, curves as PNG and CSV).
set -euo pipefail
steps=${1:-600}
batch=${2:-64}
heldout=${3:-64}
out=${OUT:-runs/seed003}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$out/results"
for recipe in ${RECIPES:-recipes/foundations/*.toml}; do
  name=$(basename "$recipe" .toml)
  [ -f "$out/results/done_$name" ] && continue
  python benchmarks/measure_recipes.py "$out/results" "$recipe" --heldout "$heldout" \
    --set data.name='"fashion_mnist"' --set model.channels=16 \
    --set 'model.channel_mult=[1, 2, 4]' --set train.steps="$steps" \
    --set train.batch_size="$batch" --set run.out_dir="\"$out\"" \
    --set log.eval_every=$((steps / 3)) --set log.eval_items=16 \
    --set 'log.eval_metrics=["nll", "mse"]' --set log.num_samples=16 \
    --set log.val_every=0 --set log.sample_every=0 --set log.checkpoint_every=0 \
    --set log.every=25 --set 'log.backends=["tensorboard", "jsonl"]' \
    > "$out/results/$name.log" 2>&1 || echo "$name: exit $? (see $out/results/$name.log)"
  touch "$out/results/done_$name"
done
difftk compare "$out"/foundations-* -o "$out/compare" \
  --tags "eval/nll_bpd,eval/mean_mse,loss/train" > "$out/compare.txt" 2>&1 || true
python - "$out/results" <<'PY'
import json, sys
from pathlib import Path
print("| run | recipe | held-out loss | mean MSE | NLL (bits/dim) |")
print("|---|---|---|---|---|")
rows = [json.loads(f.read_text()) for f in Path(sys.argv[1]).glob("*.json")]
for r in sorted(rows, key=lambda r: r["recipe"]):
    print(f"| {Path(r['recipe']).stem[:2]} | `{r['recipe']}` | {r['heldout_loss']:.4g} | "
          f"{r['mean_mse']:.3g} | {r['nll_bpd']:.4g} |")
PY
