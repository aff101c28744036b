#!/usr/bin/env bash
# Self-data distillation vs plain fine-tuning after removing 2 of whisper tiny.en's 4 decoder layers, on FSDD
# ("Self-Data Distillation for Recovering Quality in Pruned Large Language Models"): the unpruned tiny.en rewrites
# the training transcripts (`speechkit self-data`: kept where equal after normalization), then the pruned student
# (conf/whisper/distill_tiny_en.yaml with the KD and SquareHead weights at 0: cross-entropy only) is fine-tuned on
# the original or the rewritten transcripts, same steps and cuts. Stock 30 s input.
# Usage: recipes/fsdd/self_data.sh OUT_DIR   (STEPS=30 TRAIN_CUTS=400 TEST_BATCHES=4; SMOKE=1: 2 steps, 1 batch)
# Writes OUT_DIR/{plain,self_data}/wer.json, OUT_DIR/self_data.json (acceptance) and OUT_DIR/summary.txt.
set -euo pipefail
out=${1:?usage: recipes/fsdd/self_data.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
data=${SPEECHKIT_DATA:-$repo/../shared/data}
steps=${STEPS:-30}
train_cuts=${TRAIN_CUTS:-400}
test_batches=${TEST_BATCHES:-4}
if [ "${SMOKE:-0}" = 1 ]; then steps=2; test_batches=1; train_cuts=16; fi
mkdir -p "$out"
m=$out/manifests
[ -f "$m/cuts_test.jsonl.gz" ] || speechkit prepare fsdd "$data/fsdd" "$m"
python -c "import sys; from lhotse import CutSet; CutSet.from_file(sys.argv[1]).shuffle(rng=__import__('random').Random(0)).subset(first=int(sys.argv[3])).to_file(sys.argv[2])" \
  "$m/cuts_train.jsonl.gz" "$m/cuts_subset.jsonl.gz" "$train_cuts"
[ -f "$m/cuts_self.jsonl.gz" ] || speechkit self-data ct2:tiny.en "$m/cuts_subset.jsonl.gz" "$m/cuts_self.jsonl.gz" \
  --max_new_tokens 16 --progress false | tee "$out/self_data.json"
config=(-c "$repo/conf/whisper/distill_tiny_en.yaml" --model.init_args.beta 0.0 --model.init_args.gamma 0.0
        --data.init_args.config.dev_cuts "$m/cuts_dev.jsonl.gz" --data.init_args.config.test_cuts "$m/cuts_test.jsonl.gz"
        --data.init_args.config.max_duration 8.0 --trainer.max_steps "$steps" --trainer.val_check_interval "$steps"
        --trainer.limit_val_batches 1 --trainer.limit_test_batches "$test_batches")
for run in plain self_data; do
  [ -f "$out/$run/wer.json" ] && continue
  train=$m/cuts_subset.jsonl.gz; [ "$run" = self_data ] && train=$m/cuts_self.jsonl.gz
  start=$(date +%s)
  speechkit fit "${config[@]}" --data.init_args.config.train_cuts "$train" --trainer.default_root_dir "$out/$run" \
    --trainer.logger.init_args.save_dir "$out/$run"
  echo "$run: fit $(( $(date +%s) - start )) s" | tee -a "$out/times.txt"
  ckpt=$(ls -t "$out/$run"/lightning_logs/version_*/checkpoints/last.ckpt | head -n 1)
  speechkit test "${config[@]}" --data.init_args.config.train_cuts "$train" --trainer.logger false \
    --trainer.default_root_dir "$out/$run" --ckpt_path "$ckpt" --model.init_args.predictions_file "$out/$run/predictions.jsonl"
  python "$repo/tools/evaluate_wer.py" --predictions "$out/$run/predictions.jsonl" --language en --json "$out/$run/wer.json"
done
for run in plain self_data; do
  python -c "import json, sys; r = json.load(open(sys.argv[2])); print(f\"{sys.argv[1]:<10} WER {100 * r['wer']:.2f} % (raw {100 * r['wer_raw']:.2f} %)\")" \
    "$run" "$out/$run/wer.json"
done | tee "$out/summary.txt"
