#!/usr/bin/env bash
# Zero-shot whisper tiny.en (stock 30 s padding, as it was trained) on synthesized English sentences: uncompressed
# vs INT4 RTN vs INT4 GPTQ vs FP8. Evaluation: the first 100 cuts of EVAL_CUTS; calibration: 16 cuts of CALIB_CUTS
# (disjoint sentences), one pass (padded 30 s inputs make a sequential pass per layer too slow on 1 CPU thread).
# Usage: recipes/fsdd/compress_sentences.sh EVAL_CUTS CALIB_CUTS OUT_ROOT [ROW ...]
set -euo pipefail
eval_cuts=${1:?eval cuts}; calib=${2:?calibration cuts}; root=${3:?out root}; shift 3
common=(--model ct2:tiny.en --eval-cuts "$eval_cuts" --num-eval 100 --calib-cuts "$calib" --num-calib 16 --one-pass
        --pad-to-30s --max-new-tokens 96 --batch-size 20 --threads 1)
source "$(dirname "$0")/compress_rows.sh"
order=(none rtn4 gptq4 fp8)
[ $# -gt 0 ] && order=("$@")
run_compress_rows "$root" "${order[@]}"
