"""BLEU and chrF equal sacrebleu's corpus scores; signatures reported."""

import pytest
import sacrebleu

from speechkit.errors import SpeechkitError
from speechkit.metrics.bleu import score_bleu

REFS = ["The cat sat on the mat.", "A man is riding a horse in the field.", "Zwei Hunde spielen im Schnee.", "ok"]
HYPS = ["The cat sat on a mat.", "A man rides a horse on the field", "Zwei Hunde spielen im Schnee.", "okay then"]


def test_bleu_and_chrf_equal_sacrebleu():
    result = score_bleu(REFS, HYPS)
    assert result["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert 0 < result["bleu"] < 100
    assert "tok:13a" in result["signature"] and "nrefs:1" in result["signature"]
    assert "chrF" not in result["signature"] and "nc:6" in result["chrf_signature"]


def test_identical_is_100():
    assert score_bleu(REFS, REFS)["bleu"] == pytest.approx(100.0)


def test_length_mismatch_raises():
    with pytest.raises(SpeechkitError, match="refs/hyps"):
        score_bleu(REFS, HYPS[:2])


def test_empty_references_are_counted_and_their_treatment_stated():
    """Issue 11, defect 10: an empty reference line changed BLEU (and not chrF) without a word."""
    refs, hyps = [*REFS, ""], [*HYPS, "spurious words here"]
    kept = score_bleu(refs, hyps)
    assert kept["empty_refs"] == 1 and kept["segments"] == 5 and kept["segments_scored"] == 5
    assert kept["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert kept["bleu"] < score_bleu(REFS, HYPS)["bleu"]  # the hypothesis words count as unmatched n-grams ...
    assert kept["chrf"] == pytest.approx(score_bleu(REFS, HYPS)["chrf"])  # ... while sacrebleu's chrF ignores them
    assert "BLEU counts" in kept["empty_refs_treatment"] and "chrF" in kept["empty_refs_treatment"]
    dropped = score_bleu(refs, hyps, empty_refs="drop")
    assert dropped["bleu"] == pytest.approx(score_bleu(REFS, HYPS)["bleu"])
    assert dropped["empty_refs"] == 1 and dropped["segments"] == 5 and dropped["segments_scored"] == 4
    assert score_bleu(REFS, HYPS)["empty_refs"] == 0 and score_bleu(REFS, HYPS)["empty_refs_treatment"] == ""
    with pytest.raises(SpeechkitError, match="all 2 references are empty"):
        score_bleu(["", " "], ["a", "b"], empty_refs="drop")
