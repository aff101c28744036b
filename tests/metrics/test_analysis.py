"""Error analysis: substitution pairs, character confusions, suffix confusions, repetition and loops."""

import pytest

from speechkit.errors import SpeechkitError
from speechkit.metrics.analysis import (
    PASHTO_CHAR_CLASSES,
    PASHTO_SUFFIX_CHARS,
    align_words,
    analyze_errors,
    char_confusions,
    class_confusions,
    has_loop,
    letter_errors,
    repeated_insertions,
    substituted_words,
    suffix_confusion,
)


def test_pashto_suffix_confusion():
    # speech.md 1(f): (لوی, لویه) is a suffix confusion (masculine -ay vs feminine -a)
    assert suffix_confusion("لوی", "لویه", PASHTO_SUFFIX_CHARS) == ("", "ه")
    assert suffix_confusion("ستړی", "ستړې", PASHTO_SUFFIX_CHARS) == ("ی", "ې")
    assert suffix_confusion("کتاب", "کتابونه", PASHTO_SUFFIX_CHARS) is None  # tail too long
    assert suffix_confusion("لوی", "لوړ", PASHTO_SUFFIX_CHARS) is None  # ړ is not a suffix letter
    assert suffix_confusion("cats", "cat") == ("s", "")
    assert suffix_confusion("ab", "xb") is None  # no shared stem


def test_char_confusion_counts_affricate_cell():
    # speech.md 1(f): (څنګه, چنګه) increments the څ -> چ cell
    confusions = char_confusions([("څنګه", "چنګه"), ("لوی", "لویه")])
    assert confusions[("څ", "چ")] == 1
    assert confusions[("", "ه")] == 1
    assert sum(confusions.values()) == 2
    classes = class_confusions(confusions, PASHTO_CHAR_CLASSES)
    assert classes[("affricate", "affricate")] == 1 and classes[("none", "other")] == 1


def test_substitution_pairs_from_alignment():
    pairs = substituted_words(align_words(["زه لوی سړی یم", "a b c"], ["زه لویه سړی یم", "a x c"]))
    assert pairs == [("لوی", "لویه"), ("b", "x")]


def test_loops_and_repetitions():
    assert has_loop("a b a b a b a b".split())
    assert not has_loop("a b a b a b".split())  # three repeats: below min_repeats=4
    out = align_words(["the cat sat"], ["the cat sat sat sat on on"])
    assert out.insertions == 4
    assert repeated_insertions(out) == 3  # sat, sat, on (the first "on" repeats nothing before it)


def test_analyze_errors_pashto():
    refs = ["زه لوی سړی یم", "څنګه یې", "ته ښه یې"]
    hyps = ["زه لویه سړی یم", "چنګه یې", "ته ښه یې یې یې یې یې"]
    result = analyze_errors(refs, hyps, language="ps").to_dict()
    assert result["top_substitutions"] == [["لوی", "لویه", 1], ["څنګه", "چنګه", 1]]
    assert result["suffix_confusions"] == 1 and result["suffix_confusion_fraction"] == pytest.approx(0.5)
    assert ["affricate", "affricate", 1] in result["char_class_confusions"]
    assert result["insertion_rate"] == pytest.approx(4 / 9)
    assert result["repetition_rate"] == pytest.approx(4 / 9)
    assert result["looping_utterances"] == 1


def test_letter_errors_count_every_utterance_by_letter_pair():
    """Issue 22: ښ read as ش and the -ay ending ی as Arabic ي are two substitutions by letter pair; the extra ه of
    دوهه an insertion; a dropped word's letters and its space are deletions (hand-aligned)."""
    result = letter_errors(["ښه سړی", "دوه", "لس شل"], ["شه سړي", "دوهه", "لس"])
    assert result["top_substitutions"] == [["ښ", "ش", 1], ["ی", "ي", 1]]
    assert result["insertions"] == 1 and result["top_insertions"] == [["ه", 1]]
    assert result["deletions"] == 3 and sorted(result["top_deletions"]) == [[" ", 1], ["ش", 1], ["ل", 1]]
    assert result["substitutions"] == 2
    with pytest.raises(SpeechkitError):
        letter_errors(["a"], [])
