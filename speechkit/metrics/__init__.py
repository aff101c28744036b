"""Evaluation: WER/CER raw and normalized (+ error analysis), BLEU/chrF, retrieval metrics, readers and plots.

``speechkit evaluate wer|bleu|recall`` (``speechkit.metrics.cli:main``) scores files; ``WERMetric`` logs WER in
a LightningModule.
"""

from speechkit.metrics.analysis import ErrorAnalysis, analyze_errors, char_confusions, suffix_confusion
from speechkit.metrics.bleu import score_bleu
from speechkit.metrics.io import read_kaldi_text, read_pairs, read_predictions, read_trec_qrels, read_trec_run
from speechkit.metrics.retrieval import retrieval_metrics, run_from_scores
from speechkit.metrics.wer import EditCounts, WERReport, edit_counts, score_wer



def __getattr__(name: str) -> object:
    # WERMetric imports torch and torchmetrics (seconds): only on first use, so the scripts start fast.
    if name == "WERMetric":
        from speechkit.metrics.stateful import WERMetric

        return WERMetric
    raise AttributeError(f"module 'speechkit.metrics' has no attribute {name!r}")


__all__ = [
    "EditCounts",
    "ErrorAnalysis",
    "WERMetric",
    "WERReport",
    "analyze_errors",
    "char_confusions",
    "edit_counts",
    "read_kaldi_text",
    "read_pairs",
    "read_predictions",
    "read_trec_qrels",
    "read_trec_run",
    "retrieval_metrics",
    "run_from_scores",
    "score_bleu",
    "score_wer",
    "suffix_confusion",
]
