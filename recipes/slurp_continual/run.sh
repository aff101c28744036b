#!/usr/bin/env bash
# recipes/slurp_continual/run.sh OUT [SEEDS...]   (default OUT=exp/slurp_continual, SEEDS="0 1 2"; in the environment:
# SLURP=$SPEECHKIT_DATA/slurp (devel.jsonl + test.jsonl), MAX_UTTERANCES=0 (all 5,007), STEPS=100 (per task),
# METHODS="finetune replay replay_kd coconut coconut_kd joint")
#
# COCONUT (Cappellazzo et al., ACL Findings 2024) on SLURP-synth, CPU-sized: SLURP sentences spoken by eSpeak NG,
# the 18 scenarios as classes, 6 tasks of 3 in a fixed order (order_seed 0), one run per method and seed
# (conf/coconut/slurp_<method>.yaml), then the table and PNG (summarize.py). A run with an accuracy.json that has
# its wall time is skipped (delete its folder to redo it). One thread per run (OMP_NUM_THREADS=1).
set -euo pipefail
OUT=${1:-exp/slurp_continual}
shift || true
SEEDS=${*:-0 1 2}
SLURP=${SLURP:-${SPEECHKIT_DATA:-../shared/data}/slurp}
MAX_UTTERANCES=${MAX_UTTERANCES:-0}
STEPS=${STEPS:-100}
METHODS=${METHODS:-finetune replay replay_kd coconut coconut_kd joint}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RECIPE=$(cd "$(dirname "$0")" && pwd)
CONF=$(cd "$RECIPE/../.." && pwd)/conf/coconut
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

[ -f "$OUT/data/cuts_test.jsonl.gz" ] || speechkit prepare slurp_synth "$SLURP" "$OUT/data" \
  --max_utterances "$MAX_UTTERANCES" --speakers 4 --seed 0

finished() { [ -f "$1/accuracy.json" ] && grep -q '"wall_s"' "$1/accuracy.json"; }

for seed in $SEEDS; do
  for method in $METHODS; do
    run="$OUT/$method/seed$seed"
    finished "$run" && continue
    steps=$STEPS
    [ "$method" = joint ] && steps=$((6 * STEPS))  # one task: as many steps as the whole stream
    speechkit continual "$CONF/slurp_$method.yaml" --out_dir "$run" --seed "$seed" --steps_per_task "$steps" \
      --train_cuts "$OUT/data/cuts_train.jsonl.gz" --test_cuts "$OUT/data/cuts_test.jsonl.gz" --name "$method"
  done
done
python "$RECIPE/summarize.py" "$OUT"
