#!/usr/bin/env bash
# recipes/audio_captioning/run.sh [OUT]   (default OUT=exp/audio_captioning; sizes in the environment: STEPS=700
# NUM_TRAIN=1500 NUM_DEV=100 NUM_TEST=200 PARALLEL=1 (train both models at once); TINY=1 shrinks the models for the
# smoke test)
#
# Audio captioning, and the captioning model as an audio-text retriever (Labbé et al., DCASE 2023), CPU-sized:
#   0. data: offline sound scenes (speechkit prepare scenes_synth: FSDD digits, eSpeak NG sentences, beeps, sweeps,
#      noise; five templated captions per scene);
#   1. the captioner (conf/captioning/scenes_captioner.yaml) and the dual-encoder baseline
#      (conf/captioning/scenes_dual_encoder.yaml) on the same data, same audio encoder sizes and steps;
#   2. speechkit test of the captioner on the test scenes (CIDEr-D, BLEU-4, predictions.jsonl);
#   3. retrieve.py: every test audio against every test caption, T2A and A2T, raw and normalised, both models
#      (results.md, results.json, results.png).
# Every stage skips what is already there (delete its folder to redo it). One thread per run (OMP_NUM_THREADS=1).
# Wall times go to OUT/times.tsv.
set -euo pipefail
OUT=${1:-exp/audio_captioning}
STEPS=${STEPS:-700}
NUM_TRAIN=${NUM_TRAIN:-1500}
NUM_DEV=${NUM_DEV:-100}
NUM_TEST=${NUM_TEST:-200}
PARALLEL=${PARALLEL:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RECIPE=$(cd "$(dirname "$0")" && pwd)
CONF=$(cd "$RECIPE/../.." && pwd)/conf/captioning
DATA=${SPEECHKIT_DATA:-$RECIPE/../../../shared/data}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

timed() {  # timed NAME COMMAND...: run, append "NAME<TAB>seconds" to OUT/times.tsv
  local name=$1 start=$SECONDS
  shift
  "$@"
  printf '%s\t%s\n' "$name" $((SECONDS - start)) >> "$OUT/times.tsv"
}

# ---------------------------------------------------------------- 0. data
[ -f "$OUT/scenes/cuts_test.jsonl.gz" ] || timed data speechkit prepare scenes_synth "$DATA/fsdd" "$OUT/scenes" \
  --num_train "$NUM_TRAIN" --num_dev "$NUM_DEV" --num_test "$NUM_TEST" --seed 0

# ---------------------------------------------------------------- 1. the two models
paths() {  # paths RUN: the overrides that point a config at OUT
  local s="$OUT/scenes"
  echo --model.init_args.vocabulary "$s/vocabulary.txt" \
    --data.init_args.config.train_cuts "$s/cuts_train.jsonl.gz" --data.init_args.config.dev_cuts "$s/cuts_dev.jsonl.gz" \
    --data.init_args.config.test_cuts "$s/cuts_test.jsonl.gz" \
    --trainer.default_root_dir "$OUT/$1" --trainer.logger.init_args.save_dir "$OUT/$1" \
    --trainer.max_steps "$STEPS" --trainer.val_check_interval $((STEPS / 2)) \
    --model.init_args.scheduler.init_args.total_steps "$STEPS" \
    --model.init_args.scheduler.init_args.warmup_steps $((STEPS / 7 > 0 ? STEPS / 7 : 1))
}
tiny() {  # tiny SECTION: smaller sizes for the smoke test
  [ "${TINY:-0}" = 1 ] || return 0
  echo --model.init_args.encoder.dim 32 --model.init_args.encoder.num_layers 1 --model.init_args.encoder.ffn_dim 64 \
    --model.init_args."$1".dim 32 --model.init_args."$1".num_layers 1 --model.init_args."$1".ffn_dim 64
}
last() { find "$OUT/$1" -name last.ckpt | sort | tail -n 1; }  # last RUN: its final checkpoint
fit() {  # fit RUN CONFIG SECTION; RUN/DONE marks a finished run (last.ckpt is also written part way)
  [ -f "$OUT/$1/DONE" ] && return 0
  # shellcheck disable=SC2046
  timed "fit_$1" nice -n 10 speechkit fit -c "$CONF/$2" $(paths "$1") $(tiny "$3") --trainer.enable_progress_bar false \
    > "$OUT/$1.log" 2>&1
  touch "$OUT/$1/DONE"
}
if [ "$PARALLEL" = 1 ]; then
  fit captioner scenes_captioner.yaml decoder & first=$!
  fit dual_encoder scenes_dual_encoder.yaml text & second=$!
  wait $first && wait $second
else
  fit captioner scenes_captioner.yaml decoder
  fit dual_encoder scenes_dual_encoder.yaml text
fi

# ---------------------------------------------------------------- 2. captioning metrics on the test scenes
# shellcheck disable=SC2046
[ -f "$OUT/captioner/predictions.jsonl" ] || timed test_captioner nice -n 10 speechkit test \
  -c "$CONF/scenes_captioner.yaml" $(paths captioner) $(tiny decoder) --ckpt_path "$(last captioner)" \
  --model.init_args.predictions_file "$OUT/captioner/predictions.jsonl" > "$OUT/test_captioner.log" 2>&1

# ---------------------------------------------------------------- 3. retrieval table
[ -f "$OUT/results.json" ] || timed retrieve nice -n 10 python "$RECIPE/retrieve.py" "$OUT" \
  > "$OUT/retrieve.log" 2>&1
cat "$OUT/results.md"
