# Sourced by the compress_*.sh drivers: the named rows of recipes/fsdd/COMPRESSION.md and the loop that runs them.
# The caller sets the array `common` (model, manifests, decoding, threads); `run_compress_rows ROOT ROW...` runs
# `python tools/compress.py "${common[@]}" --out ROOT/ROW <row options>` one row at a time, CPU time in time.txt.
declare -A COMPRESS_ROWS=(
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

run_compress_rows() {
  local root=$1 row out
  shift
  for row in "$@"; do
    if [ -z "${COMPRESS_ROWS[$row]+set}" ]; then
      echo "unknown row '$row'; expected one of: ${!COMPRESS_ROWS[*]}" >&2
      return 2
    fi
    out="$root/$row"; mkdir -p "$out"
    # shellcheck disable=SC2086
    /usr/bin/time -f "%e %U %S" -o "$out/time.txt" \
      python tools/compress.py "${common[@]}" --out "$out" ${COMPRESS_ROWS[$row]} > "$out/log.txt" 2>&1
    echo "$row done: $(cat "$out/time.txt") (wall user sys)"
  done
}
