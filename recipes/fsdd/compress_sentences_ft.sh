#!/usr/bin/env bash
# tiny.en fine-tuned on synthesized English sentences (variable-length input, 150 steps as the FSDD recipe), then
# uncompressed vs INT4 RTN vs INT4 GPTQ vs FP8 on held-out sentences. Split of SENTENCES (a cut manifest of >= 200
# cuts): the first 100 cuts = test, the rest = train; DEV_CUTS = validation. One run at a time, one thread.
# Usage: recipes/fsdd/compress_sentences_ft.sh SENTENCES DEV_CUTS OUT_ROOT [ROW ...]
set -euo pipefail
sentences=${1:?sentence cuts}; dev=${2:?dev cuts}; root=${3:?out root}; shift 3
export OMP_NUM_THREADS=1
mkdir -p "$root/manifests"
if [ ! -f "$root/manifests/cuts_train.jsonl.gz" ]; then  # split once: later calls (other rows) reuse it
python - "$sentences" "$root/manifests" <<'PY'
import sys
from lhotse import CutSet, load_manifest
cuts = list(load_manifest(sys.argv[1]))
CutSet.from_cuts(cuts[:100]).to_file(f"{sys.argv[2]}/cuts_test.jsonl.gz")
CutSet.from_cuts(cuts[100:]).to_file(f"{sys.argv[2]}/cuts_train.jsonl.gz")
PY
fi
m="$root/manifests"
if [ ! -f "$root/fit/time.txt" ]; then
  mkdir -p "$root/fit"
  /usr/bin/time -f "%e %U %S" -o "$root/fit/time.txt" speechkit fit -c conf/whisper/fsdd_tiny_en.yaml \
    --data.init_args.config.train_cuts "$m/cuts_train.jsonl.gz" --data.init_args.config.dev_cuts "$dev" \
    --data.init_args.config.test_cuts "$m/cuts_test.jsonl.gz" --model.init_args.max_new_tokens 96 \
    --trainer.default_root_dir "$root/fit" --trainer.logger.init_args.save_dir "$root/fit" \
    --trainer.enable_progress_bar false > "$root/fit/fit.log" 2>&1
fi
ckpt=$(ls "$root"/fit/lightning_logs/version_*/checkpoints/best-*.ckpt | tail -1)
common=(--model "$ckpt" --eval-cuts "$m/cuts_test.jsonl.gz" --calib-cuts "$m/cuts_train.jsonl.gz" --num-calib 32
        --max-new-tokens 96 --batch-size 20 --threads 1)
source "$(dirname "$0")/compress_rows.sh"
order=(none rtn4 gptq4 fp8)
[ $# -gt 0 ] && order=("$@")
run_compress_rows "$root" "${order[@]}"
