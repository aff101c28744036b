#!/usr/bin/env bash
# Zero-shot whisper tiny.en (stock 30 s padding, as it was trained) on synthesized English sentences: uncompressed
# vs INT4 RTN vs INT4 GPTQ vs FP8. Evaluation: the first 100 cuts of EVAL_CUTS; calibration: 16 cuts of CALIB_CUTS
# (disjoint sentences), one pass (padded 30 s inputs make a sequential pass per layer too slow on 1 CPU thread).
# Usage: recipes/fsdd/compress_sentences.sh EVAL_CUTS CALIB_CUTS OUT_ROOT [ROW ...]
set -euo pipefail
eval_cuts=${1:?eval cuts}; calib=${2:?calibration cuts}; root=${3:?out root}; shift 3
common=(--model ct2:tiny.en --eval-cuts "$eval_cuts" --num-eval 100 --calib-cuts "$calib" --num-calib 16 --one-pass
        --pad-to-30s --max-new-tokens 96 --batch-size 20 --threads 1)
declare -A rows=(
  [none]="--method none"
  [rtn4]="--skip-before --method rtn --bits 4 --group-size 128"
  [gptq4]="--skip-before --method gptq --bits 4 --group-size 128"
  [fp8]="--skip-before --method fp8"
  [rtn8]="--skip-before --method rtn --bits 8"
  [fp4]="--skip-before --method fp4 --float-scale group --group-size 32"
)
order=(none rtn4 gptq4 fp8)
[ $# -gt 0 ] && order=("$@")
for row in "${order[@]}"; do
  out="$root/$row"; mkdir -p "$out"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e %U %S" -o "$out/time.txt" \
    python tools/compress.py "${common[@]}" --out "$out" ${rows[$row]} > "$out/log.txt" 2>&1
  echo "$row done: $(cat "$out/time.txt") (wall user sys)"
done
