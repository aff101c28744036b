#!/usr/bin/env bash
# FSDD digit classification: one `speechkit fit` + `speechkit test` per config, wall and CPU time recorded.
# Usage: recipes/fsdd/classify_heads.sh OUT_DIR CONFIG_NAME... (names of conf/classify/*.yaml without .yaml)
#   e.g. recipes/fsdd/classify_heads.sh exp/fsdd_heads fsdd_digits fsdd_harmonic_cosine fsdd_zloss
# NAME:TAG=OVERRIDES runs NAME with extra `speechkit fit/test` arguments into OUT_DIR/NAME_TAG, e.g.
#   fsdd_harmonic_bray_curtis:n8="--model.init_args.harmonic_n 8"
# Needs the manifests in out/fsdd (speechkit prepare fsdd ../shared/data/fsdd out/fsdd). Runs one thread per process
# (OMP_NUM_THREADS=1). Then: python recipes/fsdd/classify_table.py OUT_DIR/* prints the table.
set -euo pipefail
out=${1:?usage: recipes/fsdd/classify_heads.sh OUT_DIR CONFIG_NAME...}
shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for spec in "$@"; do
  name=${spec%%:*}
  extra=()
  run=$out/$name
  if [[ $spec == *:* ]]; then
    tagged=${spec#*:}
    run=$out/${name}_${tagged%%=*}
    read -r -a extra <<< "${tagged#*=}"
  fi
  config=$repo/conf/classify/$name.yaml
  mkdir -p "$run"
  dirs=(--trainer.default_root_dir "$run" --trainer.logger.init_args.save_dir "$run" "${extra[@]}")
  /usr/bin/time -f "%e %U %S" -o "$run/fit_time.txt" \
    speechkit fit -c "$config" "${dirs[@]}" --trainer.enable_progress_bar false > "$run/fit.log" 2>&1
  ckpt=$(ls -t "$run"/lightning_logs/version_*/checkpoints/*.ckpt | head -n 1)
  speechkit test -c "$config" "${dirs[@]}" --trainer.logger false --trainer.enable_progress_bar false \
    --ckpt_path "$ckpt" > "$run/test.log" 2>&1
  echo "$(basename "$run"): fit wall/user/sys s $(cat "$run/fit_time.txt"); $(grep -E 'test_acc' "$run/test.log" | tr -s ' ')"
done
