#!/usr/bin/env bash
# Minimum-WER GRPO vs cross-entropy on real whisper tiny.en and FSDD digits, same steps and data, from zero-shot;
# plus 1-shot GRPO (one training recording, as in "Reinforcement Learning for Reasoning in Large Language Models
# with One Training Example"). By default every run uses stock 30 s input (PAD_TO_30S=true).
# Usage: recipes/fsdd/grpo.sh OUT_DIR      (STEPS=30 TEST_BATCHES=4 PAD_TO_30S=true; SMOKE=1: 2 steps, 1 test batch)
# PAD_TO_30S=false trains and tests on unpadded input (variable-length encoder): the zero-shot model then loops
# until max_new_tokens, and both CE and GRPO must teach it to stop.
# Writes OUT_DIR/<run>/wer.json for run in zero_shot, ce, grpo, grpo_1shot, and OUT_DIR/summary.txt.
set -euo pipefail
out=${1:?usage: recipes/fsdd/grpo.sh OUT_DIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
data=${SPEECHKIT_DATA:-$repo/../shared/data}
steps=${STEPS:-30}
test_batches=${TEST_BATCHES:-4}
pad=${PAD_TO_30S:-true}
if [ "${SMOKE:-0}" = 1 ]; then steps=2; test_batches=1; fi
mkdir -p "$out"
m=$out/manifests
[ -f "$m/cuts_test.jsonl.gz" ] || speechkit prepare fsdd "$data/fsdd" "$m"
# the one training example of the 1-shot run: the first training cut, copied 64 times (the paper fills its batch
# with copies of the one example)
python - "$m/cuts_train.jsonl.gz" "$m/cuts_one.jsonl.gz" <<'PY'
import sys
from lhotse import CutSet
from lhotse.utils import fastcopy
cut = next(iter(CutSet.from_file(sys.argv[1])))
CutSet.from_cuts(fastcopy(cut, id=f"{cut.id}-copy{i}") for i in range(64)).to_file(sys.argv[2])
PY
common=(--data.init_args.config.dev_cuts "$m/cuts_dev.jsonl.gz" --data.init_args.config.test_cuts "$m/cuts_test.jsonl.gz"
        --data.init_args.config.max_duration 4.0 --data.init_args.config.val_batch_size 32
        --trainer.max_steps "$steps" --trainer.val_check_interval "$steps" --trainer.limit_val_batches 1
        --trainer.limit_test_batches "$test_batches" --model.init_args.pad_to_30s "$pad")
ce=(-c "$repo/conf/whisper/fsdd_tiny_en.yaml" --data.init_args.config.speed_perturb "[]")
grpo=(-c "$repo/conf/whisper/fsdd_grpo.yaml")

test_run() {  # name, config args..., then the checkpoint (or "none")
  local name=$1; shift
  local ckpt=${*: -1}; local args=("${@:1:$#-1}")
  local resume=(); [ "$ckpt" != none ] && resume=(--ckpt_path "$ckpt")
  speechkit test "${args[@]}" "${common[@]}" --data.init_args.config.train_cuts "$m/cuts_train.jsonl.gz" \
    --trainer.logger false --trainer.default_root_dir "$out/$name" "${resume[@]}" \
    --model.init_args.predictions_file "$out/$name/predictions.jsonl"
  python "$repo/tools/evaluate_wer.py" --predictions "$out/$name/predictions.jsonl" --language en --json "$out/$name/wer.json"
}

fit_run() {  # name, train manifest, config args...
  local name=$1 train=$2; shift 2
  local start; start=$(date +%s)
  speechkit fit "$@" "${common[@]}" --data.init_args.config.train_cuts "$train" \
    --trainer.default_root_dir "$out/$name" --trainer.logger.init_args.save_dir "$out/$name"
  echo "$name: fit $(( $(date +%s) - start )) s" | tee -a "$out/times.txt"
  test_run "$name" "$@" "$(ls -t "$out/$name"/lightning_logs/version_*/checkpoints/last.ckpt | head -n 1)"
}

[ -f "$out/zero_shot/wer.json" ] || test_run zero_shot "${ce[@]}" none
[ -f "$out/ce/wer.json" ] || fit_run ce "$m/cuts_train.jsonl.gz" "${ce[@]}"
[ -f "$out/grpo/wer.json" ] || fit_run grpo "$m/cuts_train.jsonl.gz" "${grpo[@]}"
[ -f "$out/grpo_1shot/wer.json" ] || fit_run grpo_1shot "$m/cuts_one.jsonl.gz" "${grpo[@]}"
for run in zero_shot ce grpo grpo_1shot; do
  python -c "import json, sys; r = json.load(open(sys.argv[2])); print(f\"{sys.argv[1]:<11} WER {100 * r['wer']:.2f} % (raw {100 * r['wer_raw']:.2f} %)\")" \
    "$run" "$out/$run/wer.json"
done | tee "$out/summary.txt"
