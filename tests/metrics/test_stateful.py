"""WERMetric: equals score_wer on the whole set however the batches and ranks split it."""

import math

import pytest
import torch

from speechkit.metrics import WERMetric
from speechkit.metrics.wer import score_wer

REFS = ["Hello, World!", "the cat sat on the mat", "", "I won't go", "a b c d"]
HYPS = ["hello world", "the cat sat on mat", "noise", "i will not go", "a x c d e"]


def test_batches_accumulate_counts_not_rates():
    metric = WERMetric(language="en")
    for start in range(0, len(REFS), 2):
        metric.update(REFS[start : start + 2], HYPS[start : start + 2])
    result = metric.compute()
    expected = score_wer(REFS, HYPS, language="en")
    assert set(result) == {"wer", "wer_raw", "cer", "cer_raw"}
    for key in result:
        assert isinstance(result[key], torch.Tensor)
        assert result[key].item() == pytest.approx(getattr(expected, key), rel=1e-6)
    # the mean of per-batch rates would differ: the states are counts
    batch_rates = [score_wer(REFS[s : s + 2], HYPS[s : s + 2]).wer for s in range(0, len(REFS), 2)]
    assert sum(batch_rates) / len(batch_rates) != pytest.approx(expected.wer)


def test_two_ranks_merge_to_the_whole_set():
    rank0, rank1 = WERMetric(language="en"), WERMetric(language="en")
    rank0.update(REFS[:3], HYPS[:3])
    rank1.update(REFS[3:], HYPS[3:])
    rank0.merge_state(rank1)  # the same "sum" reduction DDP sync applies to every state
    assert rank0.compute()["wer"].item() == pytest.approx(score_wer(REFS, HYPS).wer, rel=1e-6)


def test_reset_and_empty():
    metric = WERMetric(language="ps", normalizer="basic")
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(metric.compute()["wer"].item())
    metric.update(["کِتاب"], ["کتاب"])
    assert metric.compute()["wer"].item() == 0.0 and metric.compute()["wer_raw"].item() == 1.0
    metric.reset()
    assert metric.ref_words.item() == 0
