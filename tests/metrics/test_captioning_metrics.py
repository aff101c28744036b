"""Captioning metrics: CIDEr-D against the values aac-metrics 0.6.0 (``aac_metrics.functional.cider_d`` with
``tokenizer=str.split``) gives on the same tokens, its defining properties, exact-match METEOR against hand-computed
values, multi-reference BLEU, one-line errors."""

from __future__ import annotations

import pytest

from speechkit.errors import SpeechkitError
from speechkit.metrics.captioning import (
    caption_bleu,
    captioning_metrics,
    cider_d,
    meteor_exact,
    meteor_exact_sentence,
    ngram_counts,
)

HYPS = ["a dog barks loudly", "rain falls on a roof", "a man speaks"]
REFS = [["a dog barks", "a dog is barking loudly", "loud barking of a dog"],
        ["rain falls on the roof", "heavy rain falls", "rain on a roof"],
        ["a man is speaking", "a man talks", "someone speaks"]]


def test_cider_d_equals_aac_metrics_on_the_same_tokens():
    corpus, per_audio = cider_d(HYPS, REFS)
    # aac-metrics 0.6.0: cider_d(HYPS, REFS, return_all_scores=True, tokenizer=str.split)
    assert per_audio == pytest.approx([3.170782347946313, 3.695368655184088, 1.977370416491071], abs=1e-12)
    assert corpus == pytest.approx(2.9478404732071577, abs=1e-12)


def test_cider_d_normalizes_case_and_punctuation_and_rewards_consensus():
    assert cider_d(["A dog, barks LOUDLY!"] + HYPS[1:], REFS)[1][0] == pytest.approx(cider_d(HYPS, REFS)[1][0])
    worse = cider_d(["someone speaks"] + HYPS[1:], REFS)[1][0]
    assert worse < cider_d(HYPS, REFS)[1][0] / 3


def test_ngram_counts():
    counts = ngram_counts(["a", "b", "a"])
    assert counts[("a",)] == 2 and counts[("a", "b")] == 1 and counts[("a", "b", "a")] == 1 and len(counts) == 5


def test_bleu_uses_every_reference_and_pads_shorter_lists():
    assert caption_bleu(["a dog is barking loudly"], [["a cat", "a dog is barking loudly"]]) == pytest.approx(100.0)
    mixed = caption_bleu(HYPS, [REFS[0], REFS[1][:1], REFS[2][:2]])
    assert 0.0 < mixed < 100.0
    assert set(captioning_metrics(HYPS, REFS)) == {"cider_d", "bleu4", "meteor_exact"}


def test_exact_meteor_against_hand_computed_values():
    same = ["a", "dog", "barks", "at", "the", "door"]
    assert meteor_exact_sentence(same, same) == pytest.approx(1 - 0.5 / 6**3)
    # all six words match in three chunks (the cat | sat | on the mat): Fmean 1, penalty 0.5 (3/6)^3
    hyp, ref = ["the", "cat", "sat", "on", "the", "mat"], ["on", "the", "mat", "sat", "the", "cat"]
    assert meteor_exact_sentence(hyp, ref) == pytest.approx(1 - 0.5 * (3 / 6) ** 3)
    # two matches in one chunk: P 2/3, R 2/5, Fmean = 10PR / (R + 9P) = 5/12, penalty 0.5 (1/2)^3
    partial = meteor_exact_sentence(["a", "dog", "barks"], ["a", "dog", "is", "barking", "loudly"])
    assert partial == pytest.approx(5 / 12 * (1 - 0.0625))
    assert meteor_exact_sentence(["rain"], ["a", "dog"]) == 0.0
    assert meteor_exact(["A dog barks!"], [["rain falls", "a dog barks"]]) == pytest.approx(1 - 0.5 / 27)


@pytest.mark.parametrize("hyps, refs, message", [
    (["a"], [], "1 hypotheses but 0 reference lists"),
    ([], [], "nothing to score"),
    (["a"], [[]], "audio 0 needs a list of non-empty references"),
    (["a"], ["a dog"], "audio 0 needs a list"),
    (["a"], [["..."]], "audio 0 needs a list"),
])
def test_bad_input_is_a_one_line_error(hyps, refs, message):
    with pytest.raises(SpeechkitError, match=message):
        captioning_metrics(hyps, refs)
