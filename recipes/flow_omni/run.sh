#!/usr/bin/env bash
# Flow-Omni on synthesized spoken Q/A (recipes/flow_omni/README.md): prepare, then for each speech head (flow: the
# continuous Flow-Omni head; units: the discrete k-means baseline) stage 1 + stage 2 on the same data and steps,
# then the spoken answers to clean / noisy / pitch-shifted test prompts scored (Whisper WER, mel distance, PNG).
#   bash recipes/flow_omni/run.sh [OUT]      (default exp/flow_omni; CPU, about an hour on 2 cores)
# A finished step is recorded in OUT/times.tsv (name, seconds) and skipped by the next call.
# Sizes (environment): MAX_TRAIN MAX_DEV MAX_TEST (SLURP sentences), STAGE1_STEPS STAGE2_STEPS WARMUP, HEADS,
# EVAL_CUTS (answers scored per condition, 0 = all), MAX_ANSWER_STEPS (cap on generated answer steps; default the
# config's 100), SLURP (default $SPEECHKIT_DATA/slurp).
set -euo pipefail
OUT=${1:-exp/flow_omni}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
SLURP=${SLURP:-${SPEECHKIT_DATA:-$REPO/../shared/data}/slurp}
MAX_TRAIN=${MAX_TRAIN:-400} MAX_DEV=${MAX_DEV:-40} MAX_TEST=${MAX_TEST:-40}
STAGE1_STEPS=${STAGE1_STEPS:-100} STAGE2_STEPS=${STAGE2_STEPS:-200} WARMUP=${WARMUP:-20}
HEADS=${HEADS:-flow units} EVAL_CUTS=${EVAL_CUTS:-20} MAX_ANSWER_STEPS=${MAX_ANSWER_STEPS:-}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
touch "$OUT/times.tsv"

timed() {  # timed NAME LOG COMMAND...: run unless NAME is in times.tsv; its output to LOG; its wall time recorded
  local name=$1 log=$2 start
  shift 2
  if grep -q "^$name	" "$OUT/times.tsv"; then echo "$name: done before, skipped"; return; fi
  echo "$name: running (log $log)"
  mkdir -p "$(dirname "$log")"
  start=$(date +%s)
  if ! nice -n 10 "$@" > "$log" 2>&1; then tail -20 "$log" >&2; echo "$name failed: see $log" >&2; exit 1; fi
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - start ))" >> "$OUT/times.tsv"
}

timed data "$OUT/data/prepare.log" speechkit prepare spoken_qa_synth "$SLURP" "$OUT/data" --max_train "$MAX_TRAIN" \
  --max_dev "$MAX_DEV" --max_test "$MAX_TEST"

fit() {  # fit HEAD STAGE STEPS [more options]
  local head=$1 stage=$2 steps=$3 dir="$OUT/$1/stage$2"
  shift 3
  timed "fit_${head}_stage$stage" "$dir/fit.log" speechkit fit -c "$REPO/conf/flow_omni/tiny_stage$stage.yaml" \
    --trainer.max_steps "$steps" --trainer.val_check_interval "$steps" --trainer.default_root_dir "$dir" \
    --trainer.logger.init_args.save_dir "$dir" --model.init_args.speech_head "$head" \
    --model.init_args.scheduler.init_args.warmup_steps "$WARMUP" \
    --model.init_args.scheduler.init_args.total_steps "$steps" \
    --data.init_args.config.train_cuts "$OUT/data/cuts_train.jsonl.gz" \
    --data.init_args.config.dev_cuts "$OUT/data/cuts_dev.jsonl.gz" "$@"
}

for head in $HEADS; do
  fit "$head" 1 "$STAGE1_STEPS"
  fit "$head" 2 "$STAGE2_STEPS" --model.init_args.init_from "$OUT/$head/stage1/checkpoints/last.ckpt"
  timed "eval_$head" "$OUT/$head/eval/eval.log" speechkit eval-spoken-answers \
    "$OUT/$head/stage2/checkpoints/last.ckpt" "$OUT/data/cuts_test.jsonl.gz" "$OUT/$head/eval" --max_cuts "$EVAL_CUTS" \
    ${MAX_ANSWER_STEPS:+--max_answer_steps "$MAX_ANSWER_STEPS"}
done
python "$REPO/recipes/flow_omni/summarize.py" "$OUT"
