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
