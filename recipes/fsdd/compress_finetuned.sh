#!/usr/bin/env bash
# Compression rows of recipes/fsdd/COMPRESSION.md on the fine-tuned FSDD checkpoint (tiny.en, 150 steps,
# variable-length encoder input: no --pad-to-30s). One run at a time, one thread each; CPU time in <out>/time.txt.
# Usage: recipes/fsdd/compress_finetuned.sh CKPT MANIFEST_DIR OUT_ROOT [ROW ...]   (default: every row)
set -euo pipefail
ckpt=${1:?checkpoint}; manifests=${2:?manifest dir}; root=${3:?output root}; shift 3
# calibration: 32 training cuts spread evenly over the manifest (it is sorted by digit: its first 32 cuts are all "zero")
mkdir -p "$root"
python - "$manifests/cuts_train.jsonl.gz" "$root/calib_cuts.jsonl.gz" 32 <<'PY'
import sys
from lhotse import CutSet, load_manifest
cuts, n = list(load_manifest(sys.argv[1])), int(sys.argv[3])
CutSet.from_cuts(cuts[:: len(cuts) // n][:n]).to_file(sys.argv[2])
PY
common=(--model "$ckpt" --eval-cuts "$manifests/cuts_test.jsonl.gz" --calib-cuts "$root/calib_cuts.jsonl.gz"
        --num-calib 32 --batch-size 25 --threads 1)
declare -A rows=(
  [none]="--method none"
  [magnitude50]="--skip-before --method magnitude --sparsity 0.5"
  [sparsegpt50]="--skip-before --method sparsegpt --sparsity 0.5"
  [rtn8]="--skip-before --method rtn --bits 8"
  [gptq8]="--skip-before --method gptq --bits 8"
  [rtn4]="--skip-before --method rtn --bits 4 --group-size 128"
  [gptq4]="--skip-before --method gptq --bits 4 --group-size 128"
  [baq4]="--skip-before --method baq --avg-bits 4"
  [fp8]="--skip-before --method fp8"
  [fp4]="--skip-before --method fp4 --float-scale group --group-size 32"
  [qbert4]="--skip-before --method qbert --avg-bits 4 --group-size 128 --qbert-batches 1 --qbert-iters 10"
)
order=(none magnitude50 sparsegpt50 rtn8 gptq8 rtn4 gptq4 baq4 fp8 fp4 qbert4)
[ $# -gt 0 ] && order=("$@")
for row in "${order[@]}"; do
  out="$root/$row"; mkdir -p "$out"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e %U %S" -o "$out/time.txt" \
    python tools/compress.py "${common[@]}" --out "$out" ${rows[$row]} > "$out/log.txt" 2>&1
  echo "$row done: $(cat "$out/time.txt") (wall user sys)"
done
