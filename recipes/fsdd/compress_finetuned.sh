#!/usr/bin/env bash
# Compression rows of recipes/fsdd/COMPRESSION.md on the fine-tuned FSDD checkpoint (tiny.en, 150 steps,
# variable-length encoder input: no --pad-to-30s). One run at a time, one thread each; CPU time in <out>/time.txt.
# Usage: recipes/fsdd/compress_finetuned.sh CKPT MANIFEST_DIR OUT_ROOT [ROW ...]   (default: every row)
set -euo pipefail
ckpt=${1:?checkpoint}; manifests=${2:?manifest dir}; root=${3:?output root}; shift 3
# calibration: 32 training cuts spread evenly over the manifest (it is sorted by digit: its first 32 cuts are all "zero")
mkdir -p "$root"
common=(--model "$ckpt" --eval-cuts "$manifests/cuts_test.jsonl.gz" --calib-cuts "$manifests/cuts_train.jsonl.gz"
        --num-calib 32 --calib-spread --batch-size 25 --threads 1)
source "$(dirname "$0")/compress_rows.sh"
order=(none magnitude50 sparsegpt50 rtn8 gptq8 rtn4 gptq4 baq4 fp8 fp4 qbert4)
[ $# -gt 0 ] && order=("$@")
run_compress_rows "$root" "${order[@]}"
