"""WER/CER: equal to jiwer on a mixed set, raw vs normalized, counts, empty references."""

import math

import jiwer
import pytest

from speechkit.errors import SpeechkitError
from speechkit.metrics.wer import EditCounts, edit_counts, score_wer

REFS = [
    "the cat sat on the mat",
    "Hello, World!",
    "a b c d",
    "one two three",
    "",
    "زه ښوونځي ته ځم",
    "नमस्ते दुनिया",
]
HYPS = [
    "the cat sat on mat",
    "hello world",
    "a x c d e f",
    "",
    "noise",
    "زه ښوونځی ته ځم",
    "नमस्ते दुनिया दुनिया",
]


def test_raw_wer_and_cer_equal_jiwer():
    report = score_wer(REFS, HYPS, language="en", normalizer="none")
    words, chars = jiwer.process_words(REFS, HYPS), jiwer.process_characters(REFS, HYPS)
    assert report.wer_raw == pytest.approx(jiwer.wer(REFS, HYPS))
    assert report.cer_raw == pytest.approx(jiwer.cer(REFS, HYPS))
    raw = report.words_raw
    assert (raw.substitutions, raw.deletions, raw.insertions, raw.hits) == (
        words.substitutions, words.deletions, words.insertions, words.hits,
    )  # fmt: skip
    assert report.chars_raw.errors == chars.substitutions + chars.deletions + chars.insertions
    assert report.wer == report.wer_raw  # normalizer "none"


def test_hand_counts():
    # "a b c d" -> "a x c d e f": 1 substitution, 2 insertions over 4 reference words
    counts = edit_counts(["a b c d"], ["a x c d e f"])
    assert counts == EditCounts(substitutions=1, deletions=0, insertions=2, hits=3)
    assert counts.rate == pytest.approx(3 / 4)
    assert counts + counts == EditCounts(2, 0, 4, 6)


def test_english_normalized_wer_is_zero():
    report = score_wer(["Hello, World!"], ["hello world"], language="en")
    assert report.wer == 0.0 and report.cer == 0.0
    assert report.wer_raw == pytest.approx(1.0)  # both words differ before normalization
    assert report.normalizer == "whisper_en"


def test_pashto_normalized_keeps_letter_contrasts():
    # harakat are dropped, but ی vs ي is a real error
    report = score_wer(["کِتاب لوی"], ["کتاب لوي"], language="ps")
    assert report.words.substitutions == 1 and report.words.ref_len == 2
    assert report.wer_raw == pytest.approx(1.0)


def test_empty_references_counted_and_scored():
    report = score_wer(["", "a b", "[noise]"], ["x y", "a b", ""], language="hi")
    assert report.empty_refs_raw == 1 and report.empty_refs == 2  # "[noise]" is empty once normalized
    assert report.words_raw.insertions == 2  # words of a hypothesis of an empty reference are insertions
    assert report.wer == pytest.approx(2 / 2)
    data = report.to_dict()
    assert {"wer", "wer_raw", "cer", "substitutions", "deletions", "insertions", "ref_words"} <= set(data)
    assert data["empty_refs"] == 2 and data["utterances"] == 3


def test_undefined_rate_is_nan_not_zero():
    assert math.isnan(EditCounts(insertions=2).rate)


@pytest.mark.parametrize("refs,hyps", [(["a"], ["a", "b"]), ([], [])])
def test_bad_lengths_raise(refs, hyps):
    with pytest.raises(SpeechkitError, match="refs"):
        score_wer(refs, hyps)
