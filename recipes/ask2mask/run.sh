#!/usr/bin/env bash
# recipes/ask2mask/run.sh OUT [SEEDS...]   (default OUT=exp/ask2mask, SEEDS="0 1 2"; sizes: PRETRAIN_STEPS=500
# FINETUNE_STEPS=300 SCORER_STEPS=400 WARMUP=40 PRETRAIN_WARMUP=60 SOURCE_UTTS=2400 in the environment)
#
# Ask2Mask (Baskar et al., IEEE J-STSP 2022) on synthesized speech, CPU-sized:
#   0. data: source domain = eSpeak NG voice `en`, clean (unlabelled pretraining set; a separate labelled set for the
#      scorer); target domain = voices `en-us` + `en-gb-scotland` with noise at 5-10 dB (a little labelled data to
#      fine-tune, a dev set, a test set). Texts: English number words (speechkit prepare synthetic numbers).
#   1. k-means codebook of the pretraining targets;  2. CTC scorer on the labelled source data;
#   3. scorer confidences on the pretraining cuts;  4. pretraining: random / ask2mask / ask2mask + utterance weighting;
#   5. CTC fine-tuning on the target data from each (and from scratch), best dev checkpoint tested on the target test;
#   6. table + PNG (summarize.py).
# Every stage skips what is already there (delete a run's folder to redo it). Each run uses one thread
# (OMP_NUM_THREADS=1: on 2 shared cores two threads were 4x slower). Wall times go to OUT/times.tsv.
set -euo pipefail
OUT=${1:-exp/ask2mask}
shift || true
SEEDS=${*:-0 1 2}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-500}
FINETUNE_STEPS=${FINETUNE_STEPS:-300}
SCORER_STEPS=${SCORER_STEPS:-400}
WARMUP=${WARMUP:-40}  # warm-up steps of the CTC runs (scorer and fine-tuning)
PRETRAIN_WARMUP=${PRETRAIN_WARMUP:-60}
SOURCE_UTTS=${SOURCE_UTTS:-2400}  # pretraining texts (the scorer's set is half, each target voice an eighth)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RECIPE=$(cd "$(dirname "$0")" && pwd)
CONF=$(cd "$RECIPE/../.." && pwd)/conf
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

timed() {  # timed NAME COMMAND...: run, append "NAME<TAB>seconds" to OUT/times.tsv
  local name=$1 start=$SECONDS
  shift
  "$@"
  printf '%s\t%s\n' "$name" $((SECONDS - start)) >> "$OUT/times.tsv"
}

best() { ls "$1"/checkpoints/best-*.ckpt | head -n 1; }

# ---------------------------------------------------------------- 0. data
prepare() {  # prepare NAME VOICE COUNT SPEAKERS SEED DEV TEST
  [ -f "$OUT/$1/cuts_train.jsonl.gz" ] || timed "data_$1" speechkit prepare synthetic numbers "$OUT/$1" --voice "$2" \
    --num_utterances "$3" --speakers "$4" --seed "$5" --dev_fraction "$6" --test_fraction "$7"
}
prepare source en "$SOURCE_UTTS" 8 1 0.04 0.04
prepare scorer en $((SOURCE_UTTS / 2)) 8 2 0.08 0.04
prepare target_us en-us $((SOURCE_UTTS / 8)) 4 3 0.17 0.33
prepare target_sc en-gb-scotland $((SOURCE_UTTS / 8)) 4 4 0.17 0.33
[ -f "$OUT/target/cuts_test.jsonl.gz" ] || timed data_target_noise \
  python "$RECIPE/make_target.py" "$OUT/target" "$OUT/target_us" "$OUT/target_sc"

# ---------------------------------------------------------------- 1. codebook
[ -f "$OUT/codebook.pt" ] || timed codebook \
  speechkit msm-codebook "$OUT/source/cuts_train.jsonl.gz" "$OUT/codebook.pt" --num_codes 100 --max_frames 60000

# ---------------------------------------------------------------- 2. scorer: CTC on the labelled source data
ctc() {  # ctc RUN_DIR SEED TRAIN DEV TEST STEPS [overrides...]
  local dir=$1 seed=$2 train=$3 dev=$4 test=$5 steps=$6
  shift 6
  rm -rf "$dir"  # an interrupted run starts over (no stale best-*.ckpt)
  speechkit fit -c "$CONF/ctc/finetune.yaml" --seed_everything "$seed" --data.init_args.config.seed "$seed" \
    --data.init_args.config.train_cuts "$train" --data.init_args.config.dev_cuts "$dev" \
    --data.init_args.config.test_cuts "$test" --trainer.max_steps "$steps" \
    --trainer.val_check_interval $((steps / 3)) --model.init_args.scheduler.init_args.total_steps "$steps" \
    --model.init_args.scheduler.init_args.warmup_steps "$WARMUP" \
    --trainer.logger.init_args.save_dir "$(dirname "$dir")" --trainer.logger.init_args.name "" \
    --trainer.logger.init_args.version "$(basename "$dir")" --trainer.enable_progress_bar false "$@"
  speechkit test -c "$CONF/ctc/finetune.yaml" --data.init_args.config.test_cuts "$test" \
    --ckpt_path "$(best "$dir")" --model.init_args.predictions_file "$dir/predictions.jsonl" \
    --trainer.logger false --trainer.enable_progress_bar false
}
SCORER=$OUT/runs/scorer
[ -f "$SCORER/predictions.jsonl" ] || timed scorer ctc "$SCORER" 0 "$OUT/scorer/cuts_train.jsonl.gz" \
  "$OUT/scorer/cuts_dev.jsonl.gz" "$OUT/scorer/cuts_test.jsonl.gz" "$SCORER_STEPS"

# the domain gap: the scorer (clean source voice) on the noisy target test set
[ -f "$SCORER/target_predictions.jsonl" ] || timed scorer_on_target speechkit test -c "$CONF/ctc/finetune.yaml" \
  --data.init_args.config.test_cuts "$OUT/target/cuts_test.jsonl.gz" --ckpt_path "$(best "$SCORER")" \
  --model.init_args.predictions_file "$SCORER/target_predictions.jsonl" --trainer.logger false \
  --trainer.enable_progress_bar false

# ---------------------------------------------------------------- 3. confidences on the pretraining cuts
SCORED=$OUT/source/cuts_train_scored.jsonl.gz
[ -f "$SCORED" ] || timed confidences speechkit scorer-confidences "$(best "$SCORER")" \
  "$OUT/source/cuts_train.jsonl.gz" "$SCORED"

# ---------------------------------------------------------------- 4-5. pretrain, fine-tune, test
pretrain() {  # pretrain NAME SEED MASKING WEIGHTING
  local dir=$OUT/runs/pretrain_$1/seed$2
  [ -f "$dir/checkpoints/last.ckpt" ] && return
  rm -rf "$dir"
  timed "pretrain_$1_seed$2" speechkit fit -c "$CONF/msm/pretrain.yaml" --seed_everything "$2" \
    --data.init_args.config.seed "$2" --model.init_args.mask_seed "$2" \
    --data.init_args.config.train_cuts "$SCORED" --data.init_args.config.dev_cuts "$OUT/source/cuts_dev.jsonl.gz" \
    --model.init_args.codebook "$OUT/codebook.pt" --model.init_args.masking "$3" \
    --model.init_args.utterance_weighting "$4" --trainer.max_steps "$PRETRAIN_STEPS" \
    --model.init_args.scheduler.init_args.total_steps "$PRETRAIN_STEPS" \
    --model.init_args.scheduler.init_args.warmup_steps "$PRETRAIN_WARMUP" \
    --trainer.val_check_interval "$PRETRAIN_STEPS" --trainer.logger.init_args.save_dir "$OUT/runs/pretrain_$1" \
    --trainer.logger.init_args.name "" --trainer.logger.init_args.version "seed$2" --trainer.enable_progress_bar false
}
finetune() {  # finetune NAME SEED [PRETRAINED]
  local dir=$OUT/runs/finetune_$1/seed$2
  [ -f "$dir/predictions.jsonl" ] && return
  local init=()
  [ -n "${3:-}" ] && init=(--model.init_args.pretrained "$3")
  timed "finetune_$1_seed$2" ctc "$dir" "$2" "$OUT/target/cuts_train.jsonl.gz" "$OUT/target/cuts_dev.jsonl.gz" \
    "$OUT/target/cuts_test.jsonl.gz" "$FINETUNE_STEPS" "${init[@]}"
}
for seed in $SEEDS; do
  finetune none "$seed"
  pretrain random "$seed" random false
  finetune random "$seed" "$OUT/runs/pretrain_random/seed$seed/checkpoints/last.ckpt"
  pretrain ask2mask "$seed" ask2mask false
  finetune ask2mask "$seed" "$OUT/runs/pretrain_ask2mask/seed$seed/checkpoints/last.ckpt"
  pretrain ask2mask_uw "$seed" ask2mask true
  finetune ask2mask_uw "$seed" "$OUT/runs/pretrain_ask2mask_uw/seed$seed/checkpoints/last.ckpt"
done

# ---------------------------------------------------------------- 6. table and plot
python "$RECIPE/summarize.py" "$OUT"
