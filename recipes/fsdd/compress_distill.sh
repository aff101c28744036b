#!/usr/bin/env bash
# Distillation rows of recipes/fsdd/COMPRESSION.md: SquareHead recovery of the 50 %-sparse models and Minitron
# depth / width students, each 50 steps from the dense fine-tuned teacher, then WER / size / CPU speed on the test
# set with `speechkit compress --method none`. Needs recipes/fsdd/compress_finetuned.sh's magnitude50 and
# sparsegpt50 folders under $compressed. One run at a time, one thread; CPU time in <out>/time_*.txt.
# Usage: recipes/fsdd/compress_distill.sh CKPT MANIFEST_DIR COMPRESSED_ROOT OUT_ROOT [ROW ...]
set -euo pipefail
ckpt=${1:?teacher checkpoint}; manifests=${2:?manifest dir}; compressed=${3:?compress root}; root=${4:?out root}
shift 4
export OMP_NUM_THREADS=1
data=(--data.init_args.config.train_cuts "$manifests/cuts_train.jsonl.gz"
      --data.init_args.config.dev_cuts "$manifests/cuts_dev.jsonl.gz"
      --data.init_args.config.test_cuts "$manifests/cuts_test.jsonl.gz" --model.init_args.init_checkpoint "$ckpt")
declare -A rows=(
  [magnitude50_sh]="-c conf/whisper/distill_fsdd_recover.yaml --model.init_args.student_init $compressed/magnitude50/model"
  [sparsegpt50_sh]="-c conf/whisper/distill_fsdd_recover.yaml --model.init_args.student_init $compressed/sparsegpt50/model"
  [depth2]="-c conf/whisper/distill_fsdd_minitron.yaml --model.init_args.remove_decoder_layers 2"
  [width_half]="-c conf/whisper/distill_fsdd_minitron.yaml --model.init_args.decoder_ffn_keep 768 --model.init_args.decoder_heads_keep 3"
)
order=(magnitude50_sh sparsegpt50_sh depth2 width_half)
[ $# -gt 0 ] && order=("$@")
for row in "${order[@]}"; do
  out="$root/$row"; mkdir -p "$out"
  # shellcheck disable=SC2086
  /usr/bin/time -f "%e %U %S" -o "$out/time_fit.txt" speechkit fit ${rows[$row]} "${data[@]}" \
    --trainer.default_root_dir "$out" --trainer.logger.init_args.save_dir "$out" > "$out/fit.log" 2>&1
  last=$(ls -d "$out"/lightning_logs/version_*/checkpoints/last.ckpt | tail -1)
  /usr/bin/time -f "%e %U %S" -o "$out/time_test.txt" python tools/compress.py --model "$last" --method none \
    --eval-cuts "$manifests/cuts_test.jsonl.gz" --batch-size 25 --threads 1 --out "$out/test" > "$out/test.log" 2>&1
  echo "$row done: fit $(cat "$out/time_fit.txt"), test $(cat "$out/time_test.txt") (wall user sys)"
done
