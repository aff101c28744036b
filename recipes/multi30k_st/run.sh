#!/usr/bin/env bash
# recipes/multi30k_st/run.sh OUT [SEEDS...]   (default OUT=exp/multi30k_st, SEEDS="0"; sizes from the environment:
# MAX_TRAIN=4000 MAX_DEV=200 MAX_TEST=0 (0 = all 1,000 of test 2016) MT_STEPS=300 MT_BATCH=32 PRE_STEPS=200 ST_STEPS=200
# SUBWORDS=1000, TINY=1 for the smoke test's tiny models, MULTI30K=<folder of Multi30k's .gz files>)
#
# Speech translation with CTC + optimal-transport pretraining (Le et al., ICML 2023) on synthesized Multi30k,
# English speech -> German text, CPU-sized:
#   0. data: `speechkit prepare multi30k_synth` (eSpeak NG English speech, German in supervision.custom["de"]);
#      SentencePiece subwords on the German training text.
#   1. MT: text English characters -> German on all 29,000 training pairs (conf/st/mt_multi30k.yaml).
#   2. pretraining of the speech encoder, same steps: CTC only (ot_weight 0) and CTC + OT (text encoder from the MT
#      model; conf/ctc_ot/pretrain.yaml).
#   3. ST, same steps (conf/st/speech_translation.yaml): from scratch; speech encoder from CTC, decoder from MT;
#      speech encoder from CTC + OT, decoder from MT.
#   4. the last checkpoint of each decodes test 2016 (beam 5); summarize.py scores BLEU / chrF (sacrebleu) and
#      writes results.md / results.json / results.png.
# Independent runs go in parallel (at most three processes, one thread each). Every stage skips what is already
# there (delete a run's folder to redo it). Wall times go to OUT/times.tsv.
set -euo pipefail
OUT=${1:-exp/multi30k_st}
shift || true
SEEDS=${*:-0}
MAX_TRAIN=${MAX_TRAIN:-4000}
MAX_DEV=${MAX_DEV:-200}
MAX_TEST=${MAX_TEST:-0}
MT_STEPS=${MT_STEPS:-300}
MT_BATCH=${MT_BATCH:-32}
PRE_STEPS=${PRE_STEPS:-200}
ST_STEPS=${ST_STEPS:-200}
SUBWORDS=${SUBWORDS:-1000}
MULTI30K=${MULTI30K:-${SPEECHKIT_DATA:-data}/multi30k}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RECIPE=$(cd "$(dirname "$0")" && pwd)
CONF=$(cd "$RECIPE/../.." && pwd)/conf
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SIZES=()
if [ "${TINY:-0}" = 1 ]; then  # the smoke test: tiny models, every stage still runs
  SPEECH='{num_mel_bins: 80, dim: 32, num_layers: 1, num_heads: 2, ffn_dim: 64, conv_kernel: 7, dropout: 0.0}'
  TEXT='{dim: 32, num_layers: 1, num_heads: 2, ffn_dim: 64, dropout: 0.0, max_len: 1024}'
  SIZES=(--model.init_args.decoder "$TEXT")
fi

timed() {  # timed NAME COMMAND...: run, append "NAME<TAB>seconds" to OUT/times.tsv (only when it succeeds)
  local name=$1 start=$SECONDS
  shift
  "$@" || return $?
  printf '%s\t%s\n' "$name" $((SECONDS - start)) >> "$OUT/times.tsv"
}

ckpt() { find "$1" -name last.ckpt 2>/dev/null | head -n 1; }

fit() {  # fit RUN CONFIG STEPS SEED [overrides...]: train into OUT/RUN unless OUT/RUN/done exists
  local run=$1 config=$2 steps=$3 seed=$4 dir=$OUT/$1
  shift 4
  [ -f "$dir/done" ] && return 0
  rm -rf "$dir"  # an interrupted run starts over
  mkdir -p "$dir"
  timed "fit_$run" nice -n 10 speechkit fit -c "$CONF/$config" --seed_everything "$seed" \
    --trainer.max_steps "$steps" --trainer.val_check_interval "$steps" --trainer.default_root_dir "$dir" \
    --trainer.logger.init_args.save_dir "$dir" --trainer.enable_progress_bar false \
    --model.init_args.scheduler.init_args.total_steps "$steps" \
    --model.init_args.scheduler.init_args.warmup_steps $(( (steps + 9) / 10 )) "$@" > "$dir/fit.log" 2>&1 \
    || { tail -n 20 "$dir/fit.log" >&2; return 1; }
  touch "$dir/done"
}

evaluate() {  # evaluate RUN CONFIG [overrides...]: decode the test set with the run's last checkpoint
  local run=$1 config=$2 dir=$OUT/$1
  shift 2
  [ -f "$dir/predictions.jsonl" ] && return 0
  timed "test_$run" nice -n 10 speechkit test -c "$CONF/$config" --ckpt_path "$(ckpt "$dir")" \
    --trainer.default_root_dir "$dir/test" --trainer.logger.init_args.save_dir "$dir/test" \
    --trainer.enable_progress_bar false --model.init_args.predictions_file "$dir/predictions.jsonl" "$@" \
    > "$dir/test.log" 2>&1 || { tail -n 20 "$dir/test.log" >&2; return 1; }
}

together() {  # together "CMD1" "CMD2" ...: run in parallel, fail if any fails
  local pids=() status=0
  for command in "$@"; do eval "$command" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  return $status
}

# ---------------------------------------------------------------- 0. data
DATA=$OUT/data
[ -f "$DATA/cuts_test.jsonl.gz" ] || timed data speechkit prepare multi30k_synth "$MULTI30K" "$DATA" \
  --max_train "$MAX_TRAIN" --max_dev "$MAX_DEV" --max_test "$MAX_TEST" --speakers 4 --seed 0
SPM=$OUT/de.model
[ -f "$SPM" ] || timed subwords python -c "import sys; from speechkit.data.text_pairs import read_lines; \
from speechkit.text.subwords import train_subwords; train_subwords(read_lines(sys.argv[1]), sys.argv[2], int(sys.argv[3]))" \
  "$MULTI30K/train.de.gz" "$SPM" "$SUBWORDS"

SPEECH_DATA=(--data.init_args.config.train_cuts "$DATA/cuts_train.jsonl.gz"
  --data.init_args.config.dev_cuts "$DATA/cuts_dev.jsonl.gz" --data.init_args.config.test_cuts "$DATA/cuts_test.jsonl.gz")
TEXT_DATA=(--data.init_args.train_source "$MULTI30K/train.en.gz" --data.init_args.train_target "$MULTI30K/train.de.gz"
  --data.init_args.dev_source "$MULTI30K/val.en.gz" --data.init_args.dev_target "$MULTI30K/val.de.gz"
  --data.init_args.test_source "$MULTI30K/test_2016_flickr.en.gz"
  --data.init_args.test_target "$MULTI30K/test_2016_flickr.de.gz")
MT_ARGS=(--model.init_args.target_spm "$SPM" "${TEXT_DATA[@]}" --data.init_args.batch_size "$MT_BATCH" "${SIZES[@]}")
ST_ARGS=(--model.init_args.target_spm "$SPM" "${SPEECH_DATA[@]}" "${SIZES[@]}")
PRE_ARGS=("${SPEECH_DATA[@]}")
if [ "${TINY:-0}" = 1 ]; then
  MT_ARGS+=(--model.init_args.text_encoder "$TEXT")
  ST_ARGS+=(--model.init_args.encoder "$SPEECH")
  PRE_ARGS+=(--model.init_args.encoder "$SPEECH" --model.init_args.text_encoder "$TEXT")
fi

for SEED in $SEEDS; do
  S=seed$SEED
  # ------------------------------------------------------------ 1. MT | 2a. CTC pretraining | 3a. ST from scratch
  together \
    'fit mt_$S st/mt_multi30k.yaml $MT_STEPS $SEED "${MT_ARGS[@]}"' \
    'fit ctc_$S ctc_ot/pretrain.yaml $PRE_STEPS $SEED "${PRE_ARGS[@]}" --model.init_args.ot_weight 0' \
    'fit st_scratch_$S st/speech_translation.yaml $ST_STEPS $SEED "${ST_ARGS[@]}"'
  MT=$(ckpt "$OUT/mt_$S")
  # ------------------------------------------------------------ 2b. CTC + OT pretraining | 3b. ST from CTC
  together \
    'fit ctc_ot_$S ctc_ot/pretrain.yaml $PRE_STEPS $SEED "${PRE_ARGS[@]}" --model.init_args.text_encoder_init "$MT"' \
    'fit st_ctc_$S st/speech_translation.yaml $ST_STEPS $SEED "${ST_ARGS[@]}" \
       --model.init_args.encoder_init "$(ckpt "$OUT/ctc_$S")" --model.init_args.decoder_init "$MT"' \
    'evaluate mt_$S st/mt_multi30k.yaml "${MT_ARGS[@]}"'
  # ------------------------------------------------------------ 3c. ST from CTC + OT | 4. decoding
  together \
    'fit st_ctc_ot_$S st/speech_translation.yaml $ST_STEPS $SEED "${ST_ARGS[@]}" \
       --model.init_args.encoder_init "$(ckpt "$OUT/ctc_ot_$S")" --model.init_args.decoder_init "$MT"' \
    'evaluate st_scratch_$S st/speech_translation.yaml "${ST_ARGS[@]}"' \
    'evaluate st_ctc_$S st/speech_translation.yaml "${ST_ARGS[@]}"'
  evaluate st_ctc_ot_$S st/speech_translation.yaml "${ST_ARGS[@]}"
done

python "$RECIPE/summarize.py" "$OUT"
