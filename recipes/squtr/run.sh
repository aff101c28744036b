#!/usr/bin/env bash
# SQuTR's protocol (Li et al., 2026) on the offline Multi30k set: spoken queries (eSpeak NG, 4 speaker styles) at
# text / clean / 20 / 10 / 0 dB (offline babble, pink, brown, tone noise), two Whisper sizes x BM25 and dense, and an
# end-to-end speech retriever distilled from the dense one. Every stage skips what exists; see README.md.
# CPU only (2 cores): about 1 h with the defaults on an idle machine, most of it Whisper base.
set -euo pipefail
DATA=${SPEECHKIT_DATA:?set SPEECHKIT_DATA to the shared data folder (multi30k/)}
OUT=${OUT:-exp/squtr}
NUM_QUERIES=${NUM_QUERIES:-200}     # queries in the set
MAX_QUERIES=${MAX_QUERIES:-100}     # queries scored (the first N of the set)
DISTRACTORS=${DISTRACTORS:-10000}   # Multi30k train captions added as documents
ASRS=${ASRS:-"ct2:tiny.en ct2:base"}
RETRIEVERS=${RETRIEVERS:-"bm25 dense"}
E2E_QUERIES=${E2E_QUERIES:-1500}    # training utterances of the end-to-end retriever
E2E_STEPS=${E2E_STEPS:-400}
E2E_DIM=${E2E_DIM:-96}
E2E_LAYERS=${E2E_LAYERS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

stage() { local start=$SECONDS; "$@"; echo "stage '$3' took $((SECONDS - start)) s" >&2; }

[ -f "$OUT/set/corpus.jsonl" ] || stage speechkit bench squtr-set "$DATA/multi30k" "$OUT/set" \
    --num_queries "$NUM_QUERIES" --distractors "$DISTRACTORS"
[ -f "$OUT/e2e.pt" ] || stage speechkit bench squtr-train-e2e "$DATA/multi30k" "$OUT/e2e.pt" \
    --num_queries "$E2E_QUERIES" --steps "$E2E_STEPS" --dim "$E2E_DIM" --num_layers "$E2E_LAYERS"
# shellcheck disable=SC2086  # ASRS and RETRIEVERS are lists
stage speechkit bench squtr "$OUT/set" "$OUT/results.json" --max_queries "$MAX_QUERIES" --asr $ASRS \
    --retriever $RETRIEVERS --speech_retriever "$OUT/e2e.pt" --cache_dir "$OUT/cache" --progress false
