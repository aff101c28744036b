#!/usr/bin/env bash
# recipes/synthetic_av/run.sh OUT   (default OUT=exp/synthetic_av; sizes in the environment: UTTERANCES=600
# MSM_STEPS=400 PRETRAIN_STEPS=400 FINETUNE_STEPS=300 MSM_WARMUP=60 PRETRAIN_WARMUP=40 FINETUNE_WARMUP=60
# SNRS="clean 10 5 0 -5" SEED=0 INITS="none whisper two" MODALITIES="audio video audio_video" BABBLE_SECONDS=10
# PNG=recipes/synthetic_av/results.png)
#
# Audio-visual representational distillation (Zhang et al., arXiv 2502.05766) on the offline synthetic AV corpus:
#   0. data: eSpeak digit strings with a rendered mouth (speechkit prepare synthetic_av), babble noise for training
#      (seed 1) and for testing (seed 0), never the same clips;
#   1. the self-supervised teacher: speechkit's masked speech model (k-means codebook + MSM pretraining) trained on
#      the corpus's training audio;
#   2. distillation pretraining of the AV student: one teacher (Whisper tiny.en, layers 2 and 4) or two (Whisper +
#      the MSM encoder, layers 2 and 4 each, weight 1/2 each);
#   3. CTC fine-tuning for ASR (audio), VSR (video) and AVSR (audio_video) from scratch and from each pretraining,
#      babble at -5..20 dB mixed into the training audio; the best dev checkpoint is tested clean and with test
#      babble at each SNR;
#   4. table + PNG (summarize.py).
# Every stage skips what is already there (delete a run's folder to redo it). One thread per run; wall times go to
# OUT/times.tsv.
set -euo pipefail
OUT=${1:-exp/synthetic_av}
UTTERANCES=${UTTERANCES:-600}
MSM_STEPS=${MSM_STEPS:-400}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-400}
FINETUNE_STEPS=${FINETUNE_STEPS:-300}
MSM_WARMUP=${MSM_WARMUP:-60}
PRETRAIN_WARMUP=${PRETRAIN_WARMUP:-40}
FINETUNE_WARMUP=${FINETUNE_WARMUP:-60}
SNRS=${SNRS:-clean 10 5 0 -5}
SEED=${SEED:-0}
INITS=${INITS:-none whisper two}
MODALITIES=${MODALITIES:-audio video audio_video}
BABBLE_SECONDS=${BABBLE_SECONDS:-10}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
RECIPE=$(cd "$(dirname "$0")" && pwd)
CONF=$(cd "$RECIPE/../.." && pwd)/conf
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DATA=$OUT/data
QUIET=(--trainer.enable_progress_bar false --trainer.enable_model_summary false)

timed() {  # timed NAME COMMAND...: run, append "NAME<TAB>seconds" to OUT/times.tsv
  local name=$1 start=$SECONDS
  shift
  "$@"
  printf '%s\t%s\n' "$name" $((SECONDS - start)) >> "$OUT/times.tsv"
}
logs() {  # logs DIR: sets LOGS, the options that make the CSV logger write into DIR itself
  LOGS=(--trainer.logger.init_args.save_dir "$(dirname "$1")" --trainer.logger.init_args.name ""
        --trainer.logger.init_args.version "$(basename "$1")")
}

# ---------------------------------------------------------------- 0. data
[ -f "$DATA/cuts_test.jsonl.gz" ] || timed data speechkit prepare synthetic_av digits "$DATA" \
  --num_utterances "$UTTERANCES"
for part in train:1 test:0; do
  [ -f "$OUT/babble_${part%%:*}/noise_cuts.jsonl.gz" ] || timed "babble_${part%%:*}" python -c \
    "from speechkit.bench.noise import build_noise_set; build_noise_set('$OUT/babble_${part%%:*}', 2, $BABBLE_SECONDS, seed=${part##*:}, categories=('babble',))"
done

# ---------------------------------------------------------------- 1. the self-supervised teacher (MSM)
wanted() { [[ " $INITS " == *" $1 "* ]]; }  # wanted INIT: is INIT among INITS
wanted two && { [ -f "$OUT/codebook.pt" ] || timed codebook speechkit msm-codebook "$DATA/cuts_train.jsonl.gz" "$OUT/codebook.pt" \
  --num_codes 100 --max_frames 60000; }
MSM=$OUT/runs/msm
if wanted two && [ ! -f "$MSM/checkpoints/last.ckpt" ]; then
  rm -rf "$MSM"
  logs "$MSM"
  timed msm speechkit fit -c "$CONF/msm/pretrain.yaml" --seed_everything "$SEED" \
    --data.init_args.config.train_cuts "$DATA/cuts_train.jsonl.gz" --data.init_args.config.dev_cuts "$DATA/cuts_dev.jsonl.gz" \
    --model.init_args.codebook "$OUT/codebook.pt" --trainer.max_steps "$MSM_STEPS" --trainer.val_check_interval "$MSM_STEPS" \
    --model.init_args.scheduler.init_args.total_steps "$MSM_STEPS" \
    --model.init_args.scheduler.init_args.warmup_steps "$MSM_WARMUP" "${LOGS[@]}" "${QUIET[@]}"
fi

# ---------------------------------------------------------------- 2. distillation pretraining
WHISPER='{name: whisper, kind: whisper, source: "ct2:tiny.en", layers: [2, 4], weight: 0.5}'
MSM_TEACHER="{name: msm, kind: msm, source: \"$MSM/checkpoints/last.ckpt\", layers: [2, 4], weight: 0.5}"
pretrain() {  # pretrain NAME TEACHERS
  local dir=$OUT/runs/pretrain_$1
  [ -f "$dir/checkpoints/last.ckpt" ] && return
  rm -rf "$dir"
  logs "$dir"
  timed "pretrain_$1" speechkit fit -c "$CONF/av_distill/pretrain.yaml" --seed_everything "$SEED" \
    --model.init_args.teachers "$2" --data.init_args.config.train_cuts "$DATA/cuts_train.jsonl.gz" \
    --data.init_args.config.dev_cuts "$DATA/cuts_dev.jsonl.gz" --trainer.max_steps "$PRETRAIN_STEPS" \
    --trainer.val_check_interval "$PRETRAIN_STEPS" --model.init_args.scheduler.init_args.total_steps "$PRETRAIN_STEPS" \
    --model.init_args.scheduler.init_args.warmup_steps "$PRETRAIN_WARMUP" "${LOGS[@]}" "${QUIET[@]}"
}
wanted whisper && pretrain whisper "[${WHISPER/0.5/1.0}]"
wanted two && pretrain two "[$WHISPER, $MSM_TEACHER]"

# ---------------------------------------------------------------- 3. fine-tuning and tests
finetune() {  # finetune INIT MODALITIES
  local dir=$OUT/runs/ft_$1_$2 init=()
  [ "$1" != none ] && init=(--model.init_args.pretrained "$OUT/runs/pretrain_$1/checkpoints/last.ckpt")
  if ! ls "$dir"/checkpoints/best-*.ckpt > /dev/null 2>&1; then
    rm -rf "$dir"
    logs "$dir"
    timed "ft_$1_$2" speechkit fit -c "$CONF/av_distill/finetune.yaml" --seed_everything "$SEED" \
      --data.init_args.config.train_cuts "$DATA/cuts_train.jsonl.gz" --data.init_args.config.dev_cuts "$DATA/cuts_dev.jsonl.gz" \
      --data.init_args.config.test_cuts "$DATA/cuts_test.jsonl.gz" --model.init_args.modalities "$2" --model.init_args.noise_cuts "$OUT/babble_train/noise_cuts.jsonl.gz" \
      --model.init_args.train_snr "[-5, 20]" --trainer.max_steps "$FINETUNE_STEPS" \
      --trainer.val_check_interval $((FINETUNE_STEPS / 5)) --model.init_args.scheduler.init_args.total_steps "$FINETUNE_STEPS" \
      --model.init_args.scheduler.init_args.warmup_steps "$FINETUNE_WARMUP" "${init[@]}" "${LOGS[@]}" "${QUIET[@]}"
  fi
  local best
  best=$(ls "$dir"/checkpoints/best-*.ckpt | head -n 1)
  for snr in $SNRS; do
    [ "$2" = video ] && [ "$snr" != clean ] && continue  # lip reading hears nothing: noise cannot change it
    [ -f "$dir/test_$snr.jsonl" ] && continue
    local noise=(--model.init_args.test_snr null)
    [ "$snr" != clean ] && noise=(--model.init_args.test_snr "$snr")
    timed "test_$1_$2_$snr" speechkit test -c "$CONF/av_distill/finetune.yaml" --ckpt_path "$best" \
      --data.init_args.config.test_cuts "$DATA/cuts_test.jsonl.gz" --model.init_args.modalities "$2" \
      --model.init_args.noise_cuts "$OUT/babble_test/noise_cuts.jsonl.gz" "${noise[@]}" \
      --model.init_args.predictions_file "$dir/test_$snr.jsonl" --trainer.logger false "${QUIET[@]}"
  done
}
for init in $INITS; do
  for modalities in $MODALITIES; do
    finetune "$init" "$modalities"
  done
done

# ---------------------------------------------------------------- 4. table and plot
python "$RECIPE/summarize.py" "$OUT" --png "${PNG:-$RECIPE/results.png}"
