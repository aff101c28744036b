#!/usr/bin/env bash
# FSDD digit classification: one `speechkit fit` + `speechkit test` per config, wall and CPU time recorded.
# Usage: recipes/fsdd/classify_heads.sh OUT_DIR CONFIG_NAME... (names of conf/classify/*.yaml without .yaml)
#   e.g. recipes/fsdd/classify_heads.sh exp/fsdd_heads fsdd_digits fsdd_harmonic_cosine fsdd_zloss
# NAME:TAG=OVERRIDES runs NAME with extra `speechkit fit/test` arguments into OUT_DIR/NAME_TAG, e.g.
#   fsdd_harmonic_bray_curtis:n8="--model.init_args.harmonic_n 8"
# SEEDS="0 1 2" runs every config once per seed (`--seed_everything N`) into OUT_DIR/NAME/seed_N; without SEEDS
# each config runs once with its own seed into OUT_DIR/NAME. Runs are strictly sequential.
# Needs the manifests in out/fsdd (speechkit prepare fsdd ../shared/data/fsdd out/fsdd). Runs one thread per process
# (OMP_NUM_THREADS=1). Then: python recipes/fsdd/classify_report.py table OUT_DIR/* prints the table.
set -euo pipefail
out=${1:?usage: recipes/fsdd/classify_heads.sh OUT_DIR CONFIG_NAME...}
shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

run_one() {  # run_one CONFIG RUN_DIR EXTRA_ARGS...
  local config=$1 run=$2
  shift 2
  mkdir -p "$run"
  local dirs=(--trainer.default_root_dir "$run" --trainer.logger.init_args.save_dir "$run" "$@")
  /usr/bin/time -f "%e %U %S" -o "$run/fit_time.txt" \
    speechkit fit -c "$config" "${dirs[@]}" --trainer.enable_progress_bar false > "$run/fit.log" 2>&1
  local ckpt
  ckpt=$(ls -t "$run"/lightning_logs/version_*/checkpoints/*.ckpt | head -n 1)
  speechkit test -c "$config" "${dirs[@]}" --trainer.logger false --trainer.enable_progress_bar false \
    --ckpt_path "$ckpt" > "$run/test.log" 2>&1
  echo "$run: fit wall/user/sys s $(cat "$run/fit_time.txt"); $(grep -E 'test_acc' "$run/test.log" | tr -s ' ')"
}

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
  if [[ -z ${SEEDS:-} ]]; then
    run_one "$config" "$run" "${extra[@]}"
  else
    for seed in $SEEDS; do
      run_one "$config" "$run/seed_$seed" --seed_everything "$seed" "${extra[@]}"
    done
  fi
done
