"""Corpus BLEU and chrF with sacrebleu, reported with sacrebleu's signature strings.

BLEU: Papineni et al., "BLEU: a Method for Automatic Evaluation of Machine Translation", ACL 2002, eq. (1)-(2);
chrF: Popović, "chrF: character n-gram F-score for automatic MT evaluation", WMT 2015 (beta = 2). Both are
computed by sacrebleu (Post, "A Call for Clarity in Reporting BLEU Scores", WMT 2018) exactly as
``sacrebleu.corpus_bleu`` / ``corpus_chrf``; scores are on sacrebleu's 0-100 scale.
"""

from __future__ import annotations

from typing import Literal, Sequence

from sacrebleu.metrics import BLEU, CHRF

from speechkit.errors import SpeechkitError

EmptyRefs = Literal["keep", "drop"]
# How each choice treats a segment whose reference is empty (sacrebleu itself treats them differently per metric).
EMPTY_REFS_TREATMENT: dict[str, str] = {
    "keep": "kept: BLEU counts their hypothesis words as unmatched n-grams, sacrebleu's chrF gives them no statistics",
    "drop": "dropped from BLEU and chrF, with their hypotheses",
}


def empty_reference_indices(refs: Sequence[str]) -> list[int]:
    """Positions of the references with no character but whitespace."""
    return [index for index, ref in enumerate(refs) if not ref.strip()]


def score_bleu(
    refs: Sequence[str], hyps: Sequence[str], tokenize: str | None = None, empty_refs: EmptyRefs = "keep"
) -> dict[str, float | int | str]:
    """Corpus BLEU and chrF of ``hyps`` against one reference each.

    Args:
        refs: one reference per segment.
        hyps: hypotheses, same length and order.
        tokenize: sacrebleu BLEU tokenizer (``13a`` by default; ``zh``, ``ja-mecab``, ``flores200`` ...).
        empty_refs: ``keep`` segments with an empty reference (sacrebleu's behaviour: their hypothesis words lower
            BLEU's precision; chrF ignores them) or ``drop`` them from both metrics. Either way their number is
            reported.

    Returns:
        ``bleu``, ``chrf`` (0-100), ``signature`` (BLEU's), ``chrf_signature``, ``segments`` (all),
        ``segments_scored``, ``empty_refs`` (how many references are empty), ``empty_refs_treatment`` (a sentence),
        ``bleu_details`` (sacrebleu's one-line summary with n-gram precisions and brevity penalty).
    """
    if len(refs) != len(hyps):
        raise SpeechkitError(f"refs/hyps: expected equal lengths, got {len(refs)} references, {len(hyps)} hypotheses")
    if not refs:
        raise SpeechkitError("refs: expected at least one segment, got none")
    if empty_refs not in EMPTY_REFS_TREATMENT:
        raise SpeechkitError(f"empty_refs={empty_refs!r}: expected one of {', '.join(EMPTY_REFS_TREATMENT)}")
    empty = set(empty_reference_indices(refs))
    if empty_refs == "drop":
        refs = [ref for index, ref in enumerate(refs) if index not in empty]
        hyps = [hyp for index, hyp in enumerate(hyps) if index not in empty]
        if not refs:
            raise SpeechkitError(f"refs: all {len(empty)} references are empty; nothing to score")
    bleu, chrf = BLEU(tokenize=tokenize), CHRF()
    bleu_score = bleu.corpus_score(list(hyps), [list(refs)])
    chrf_score = chrf.corpus_score(list(hyps), [list(refs)])
    return {
        "bleu": bleu_score.score,
        "chrf": chrf_score.score,
        "signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "segments": len(refs) + (len(empty) if empty_refs == "drop" else 0),
        "segments_scored": len(refs),
        "empty_refs": len(empty),
        "empty_refs_treatment": EMPTY_REFS_TREATMENT[empty_refs] if empty else "",
        "bleu_details": str(bleu_score),
    }
