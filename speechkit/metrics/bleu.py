"""Corpus BLEU and chrF with sacrebleu, reported with sacrebleu's signature strings.

BLEU: Papineni et al., "BLEU: a Method for Automatic Evaluation of Machine Translation", ACL 2002, eq. (1)-(2);
chrF: Popović, "chrF: character n-gram F-score for automatic MT evaluation", WMT 2015 (beta = 2). Both are
computed by sacrebleu (Post, "A Call for Clarity in Reporting BLEU Scores", WMT 2018) exactly as
``sacrebleu.corpus_bleu`` / ``corpus_chrf``; scores are on sacrebleu's 0-100 scale.
"""

from __future__ import annotations

from typing import Sequence

from sacrebleu.metrics import BLEU, CHRF

from speechkit.errors import SpeechkitError


def score_bleu(refs: Sequence[str], hyps: Sequence[str], tokenize: str | None = None) -> dict[str, float | str]:
    """Corpus BLEU and chrF of ``hyps`` against one reference each.

    Args:
        refs: one reference per segment.
        hyps: hypotheses, same length and order.
        tokenize: sacrebleu BLEU tokenizer (``13a`` by default; ``zh``, ``ja-mecab``, ``flores200`` ...).

    Returns:
        ``bleu``, ``chrf`` (0-100), ``signature`` (BLEU's), ``chrf_signature``, ``segments``, ``bleu_details``
        (sacrebleu's one-line summary with n-gram precisions and brevity penalty).
    """
    if len(refs) != len(hyps):
        raise SpeechkitError(f"refs/hyps: expected equal lengths, got {len(refs)} references, {len(hyps)} hypotheses")
    if not refs:
        raise SpeechkitError("refs: expected at least one segment, got none")
    bleu, chrf = BLEU(tokenize=tokenize), CHRF()
    bleu_score = bleu.corpus_score(list(hyps), [list(refs)])
    chrf_score = chrf.corpus_score(list(hyps), [list(refs)])
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "segments": len(refs),
        "bleu_details": str(bleu_score),
    }
