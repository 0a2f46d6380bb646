#!/usr/bin/env bash
# The recipe search behind recipes/fashion_mnist/edm.toml (docs/recipes.md): train one
# candidate for a fixed number of steps, then score 1,000 Heun-18 EMA samples against the
# 10,000 held-out test images with pixel FID (difftk eval). A budget in minutes becomes a
# step count through the candidate's images/s on a quiet machine
# (benchmarks/recipe_throughput.py), so candidates can be trained side by side, one thread
# each, without the machine's load changing what they learn.
#
#   bash benchmarks/fashion_mnist_search.sh NAME STEPS [--set section.field=value ...]
#
# Appends one JSON line per candidate to runs/fmsearch/results.jsonl. RECIPE=path picks
# another base recipe (recipes/edm.toml for digits); GUIDANCE="1 1.5 2" scores a
# class-conditional run at each classifier-free guidance scale.
set -euo pipefail
name=$1
steps=$2
shift 2
out=runs/fmsearch
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
start=$(date +%s)
recipe=${RECIPE:-recipes/fashion_mnist/edm.toml}
difftk train "$recipe" --set run.out_dir="\"$out\"" \
  --set run.name="\"$name\"" --set train.steps="$steps" --set train.time_limit=0 \
  --set log.val_every=0 --set log.sample_every=0 --set log.checkpoint_every=0 \
  --set precision.name='"fp32"' "$@" > "$out/$name.train.log" 2>&1
trained=$(date +%s)
for g in ${GUIDANCE:-1}; do
  tag=$name$([ -n "${GUIDANCE:-}" ] && echo "_g$g" || true)
  guide=(); [ -n "${GUIDANCE:-}" ] && guide=(--guidance "$g")
  difftk eval "$out/$name" -n 1000 "${guide[@]}" --json > "$out/$tag.eval.json" \
    2> "$out/$tag.eval.err"
  done_=$(date +%s)
  python - "$tag" "$steps" "$out" $((trained - start)) $((done_ - trained)) "$recipe $*" <<'PY'
import json, sys
name, steps, out, train_s, eval_s, sets = sys.argv[1:7]
ev = json.load(open(f"{out}/{name}.eval.json"))
row = {"name": name, "steps": int(steps), "train_s": int(train_s), "eval_s": int(eval_s),
       "sets": sets, **ev}
with open(f"{out}/results.jsonl", "a") as f:
    f.write(json.dumps(row) + "\n")
print(json.dumps(row))
PY
  trained=$(date +%s)
done
