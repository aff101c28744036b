#!/usr/bin/env bash
# FSDD with real whisper tiny.en: prepare -> zero-shot test -> fine-tune -> test.
# Usage: recipes/fsdd/run.sh OUT_DIR [extra `speechkit fit` overrides, e.g. --trainer.max_steps 2]
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

speechkit prepare fsdd "$data/fsdd" "$out/manifests"
if [ "${SKIP_ZERO_SHOT:-0}" != 1 ]; then
  # Zero-shot: stock Whisper input (padded to 30 s); unpadded input makes an un-tuned Whisper loop.
  speechkit test -c "$config" "${manifests[@]}" "${logs[@]}" --trainer.logger false \
    --model.init_args.pad_to_30s true --model.init_args.predictions_file "$out/zero_shot/predictions.jsonl"
  python "$repo/tools/evaluate_wer.py" --predictions "$out/zero_shot/predictions.jsonl" --language en \
    --json "$out/zero_shot/wer.json"
fi
start=$(date +%s)
speechkit fit -c "$config" "${manifests[@]}" "${logs[@]}" "$@"
echo "fine-tuning wall time: $(( $(date +%s) - start )) s" | tee "$out/train_time.txt"
best=$(ls -t "$out"/lightning_logs/version_*/checkpoints/best-*.ckpt | head -n 1)
speechkit test -c "$config" "${manifests[@]}" "${logs[@]}" --trainer.logger false --ckpt_path "$best" \
  --model.init_args.predictions_file "$out/predictions.jsonl"
python "$repo/tools/evaluate_wer.py" --predictions "$out/predictions.jsonl" --language en --json "$out/wer.json"
