#!/usr/bin/env bash
# FSDD with real whisper tiny.en: prepare -> zero-shot test -> fine-tune -> test.
# Usage: recipes/fsdd/run.sh OUT_DIR [extra `speechkit fit` overrides]   (SMOKE=1: 2 steps; SKIP_ZERO_SHOT=1)
# Writes OUT_DIR/predictions.jsonl (ids are the recordings' file stems, e.g. 7_jackson_3) and OUT_DIR/wer.json.
set -euo pipefail
out=${1:?usage: recipes/fsdd/run.sh OUT_DIR [fit overrides]}
shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
data=${SPEECHKIT_DATA:-$repo/../shared/data}
config=$repo/conf/whisper/fsdd_tiny_en.yaml
mkdir -p "$out"
manifests=(--data.init_args.config.train_cuts "$out/manifests/cuts_train.jsonl.gz"
           --data.init_args.config.dev_cuts "$out/manifests/cuts_dev.jsonl.gz"
           --data.init_args.config.test_cuts "$out/manifests/cuts_test.jsonl.gz")
logs=(--trainer.default_root_dir "$out" --trainer.logger.init_args.save_dir "$out")
smoke=()
if [ "${SMOKE:-0}" = 1 ]; then  # two training steps, one batch of validation and test: checks the recipe runs
  smoke=(--trainer.max_steps 2 --trainer.val_check_interval 2 --trainer.limit_val_batches 1
         --trainer.limit_test_batches 1 --data.init_args.config.val_batch_size 4)
fi

speechkit prepare fsdd "$data/fsdd" "$out/manifests"
if [ "${SKIP_ZERO_SHOT:-0}" != 1 ]; then
  # Zero-shot: stock Whisper input (padded to 30 s); unpadded input makes an un-tuned Whisper loop.
  speechkit test -c "$config" "${manifests[@]}" "${logs[@]}" "${smoke[@]}" --trainer.logger false \
    --model.init_args.pad_to_30s true --model.init_args.predictions_file "$out/zero_shot/predictions.jsonl"
  python "$repo/tools/evaluate_wer.py" --predictions "$out/zero_shot/predictions.jsonl" --language en \
    --json "$out/zero_shot/wer.json"
fi
start=$(date +%s)
speechkit fit -c "$config" "${manifests[@]}" "${logs[@]}" "${smoke[@]}" "$@"
echo "fine-tuning wall time: $(( $(date +%s) - start )) s" | tee "$out/train_time.txt"
best=$(ls -t "$out"/lightning_logs/version_*/checkpoints/best-*.ckpt | head -n 1)
speechkit test -c "$config" "${manifests[@]}" "${logs[@]}" "${smoke[@]}" --trainer.logger false --ckpt_path "$best" \
  --model.init_args.predictions_file "$out/predictions.jsonl"
python "$repo/tools/evaluate_wer.py" --predictions "$out/predictions.jsonl" --language en --json "$out/wer.json"
