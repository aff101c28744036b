#!/usr/bin/env bash
# The main job on an embedded default: synthesize Kyrgyz speech offline (eSpeak NG reads ky_numbers.txt), then fine-tune whisper base
# with a new <|ky|> token (conf/whisper/new_language.yaml). Prints dev WER before and after training.
# Usage: recipes/new_language/run.sh OUT_DIR [extra `speechkit fit` overrides, e.g. --trainer.max_steps 2]
# Writes OUT_DIR/manifests (corpus), OUT_DIR/lightning_logs (metrics, best checkpoint), OUT_DIR/wall_time.txt.
set -euo pipefail
out=${1:?usage: recipes/new_language/run.sh OUT_DIR [fit overrides]}
shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
config=$repo/conf/whisper/new_language.yaml
utterances=${NUM_UTTERANCES:-400}
start=$(date +%s)
mkdir -p "$out"
# 6 speaker styles: the first 4 (those of seed 0 without --test-speakers) speak train and dev, the last 2 only test:
# the test split is unseen speakers and unseen texts (issue 22); train and dev are as before the option existed.
speechkit prepare synthetic "$repo/recipes/new_language/ky_numbers.txt" "$out/manifests" --voice ky --num-utterances "$utterances" --speakers 6 \
  --test-speakers 2 --seed 0 --dev-fraction 0.05 --test-fraction 0.05
speechkit fit -c "$config" \
  --data.init_args.config.train_cuts "$out/manifests/cuts_train.jsonl.gz" \
  --data.init_args.config.dev_cuts "$out/manifests/cuts_dev.jsonl.gz" \
  --data.init_args.config.test_cuts "$out/manifests/cuts_test.jsonl.gz" \
  --trainer.default_root_dir "$out" --trainer.logger.init_args.save_dir "$out" "$@"
echo "wall time (prepare + fit): $(( $(date +%s) - start )) s" | tee "$out/wall_time.txt"
# The best checkpoint on the speaker-disjoint test split (test_wer / test_wer_raw / test_cer; transcripts in
# OUT_DIR/test_predictions.jsonl). SKIP_TEST=1 skips it.
if [ -z "${SKIP_TEST:-}" ]; then
  best=$(ls -t "$out"/lightning_logs/version_*/checkpoints/best-*.ckpt | head -n 1)
  speechkit test -c "$config" \
    --data.init_args.config.train_cuts "$out/manifests/cuts_train.jsonl.gz" \
    --data.init_args.config.dev_cuts "$out/manifests/cuts_dev.jsonl.gz" \
    --data.init_args.config.test_cuts "$out/manifests/cuts_test.jsonl.gz" \
    --trainer.default_root_dir "$out" --trainer.logger false "$@" --ckpt_path "$best" \
    --model.init_args.predictions_file "$out/test_predictions.jsonl" 2>&1 | tee "$out/test.log"
fi
