#!/usr/bin/env bash
# The Pashto study without Common Voice (issue 22): synthesize the offline proxy corpus (Pashto number words in
# Arabic script read by eSpeak NG's Persian and Urdu voices; Urdu number words for multistage's first stage), then run
# the four strategies with <|ps|> on the same data and steps, SEEDS times each, and write the table and PNG.
# Usage: recipes/commonvoice_pashto/offline.sh OUT_DIR [speechkit fit overrides for every run]
# Environment (defaults = the study): MODEL=ct2:base STEPS=1000 SEEDS=3 COPIES=2 GATE=0.6 PS_LINES= UR_LINES=
#   STRATEGIES="full lora frozen_encoder multistage"
#   STEPS: optimizer steps per strategy (multistage: STEPS/2 on Urdu, then STEPS/2 on Pashto, gated on Urdu dev WER);
#   SEEDS: runs per strategy (seeds 0..SEEDS-1); COPIES: readings of each Pashto text (several speakers);
#   PS_LINES / UR_LINES: use only the first N lines of each text file (smoke runs); GATE: Urdu dev WER gate.
# Writes OUT_DIR/texts, OUT_DIR/{ps_fa,ps_ur,ps,ur} (manifests; ps = both voices, test = 2 unseen speakers per voice
# and unseen texts), OUT_DIR/compare/{summary.md,summary.json,summary.png,seed<k>/...}, OUT_DIR/wall_time.txt.
set -euo pipefail
out=${1:?usage: recipes/commonvoice_pashto/offline.sh OUT_DIR [fit overrides]}
shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
model=${MODEL:-ct2:base}
steps=${STEPS:-1000}
seeds=${SEEDS:-3}
gate=${GATE:-0.6}
start=$(date +%s)
mkdir -p "$out"
python "$repo/recipes/commonvoice_pashto/number_words.py" "$out/texts" --copies "${COPIES:-2}"
ps_limit=(${PS_LINES:+--num_utterances "$PS_LINES"})
ur_limit=(${UR_LINES:+--num_utterances "$UR_LINES"})
for voice in fa ur; do  # the same texts in the same order and seed: the same split of texts for both voices
  speechkit prepare synthetic "$out/texts/ps_numbers_$voice.tsv" "$out/ps_$voice" --voice "$voice" --language ps \
    --speakers 6 --test_speakers 2 --seed 0 --dev_fraction 0.1 --test_fraction 0.15 "${ps_limit[@]}"
done
mkdir -p "$out/ps"
for split in train dev test; do
  lhotse combine "$out/ps_fa/cuts_$split.jsonl.gz" "$out/ps_ur/cuts_$split.jsonl.gz" "$out/ps/cuts_$split.jsonl.gz"
done
speechkit prepare synthetic "$out/texts/ur_numbers.txt" "$out/ur" --voice ur --speakers 4 --seed 1 \
  --dev_fraction 0.05 --test_fraction 0.05 "${ur_limit[@]}"
speechkit compare-strategies -c "$repo/conf/whisper/pashto_offline.yaml" \
  --train "$out/ps/cuts_train.jsonl.gz" --dev "$out/ps/cuts_dev.jsonl.gz" --test "$out/ps/cuts_test.jsonl.gz" \
  --language ps --related_train "$out/ur/cuts_train.jsonl.gz" --related_dev "$out/ur/cuts_dev.jsonl.gz" \
  --related_language ur --related_max_dev_wer "$gate" --max_steps "$steps" --seeds $(seq 0 $((seeds - 1))) \
  --strategies ${STRATEGIES:-full lora frozen_encoder multistage} --lr lora=1e-3 --out_dir "$out/compare" \
  --model.init_args.model_name_or_path "$model" "$@"
echo "wall time (prepare + runs): $(( $(date +%s) - start )) s" | tee "$out/wall_time.txt"
