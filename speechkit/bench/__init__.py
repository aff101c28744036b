"""Benchmarks users run on their own models: ``speechkit bench <name>``.

``squtr``: spoken-query to text retrieval under noise (Li et al., 2026, "SQuTR: A Robustness Benchmark for Spoken
Query to Text Retrieval under Acoustic Noise"): BEIR-format sets, synthesized queries, noise at set SNRs, cascades
of ASR and text retrievers and end-to-end speech-embedding retrievers, scored by nDCG@10 / MRR@10 and WER.
"""

COMMANDS: dict[str, str] = {
    "squtr": "speechkit.bench.squtr:squtr",
    "squtr-set": "speechkit.bench.offline_set:squtr_set",
    "squtr-noise": "speechkit.bench.noise:squtr_noise",
    "squtr-train-e2e": "speechkit.bench.speech_retriever:squtr_train_e2e",
}
