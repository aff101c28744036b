"""Span masks (speechkit.data.masking): wav2vec2 random spans and Ask2Mask's confidence-guided spans.

Paper: *Ask2Mask: Guided Data Selection for Masked Speech Modeling* (speech.md section 3 (f)).
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chisquare, chi2_contingency

from speechkit.data.masking import (
    ask2mask_span_mask,
    draw_starts,
    eligible_starts,
    random_span_mask,
    spans_from_starts,
)
from speechkit.errors import SpeechkitError

pytestmark = pytest.mark.usefixtures("one_thread")


def run_starts(mask: torch.Tensor) -> torch.Tensor:
    """The first frame of every run of masked frames (each is a span start)."""
    previous = torch.cat([torch.tensor([False]), mask[:-1]])
    return torch.nonzero(mask & ~previous).flatten()


def test_spans_extend_right_and_clip_at_the_end():
    mask = spans_from_starts(torch.tensor([1, 8]), 10, 3)
    assert mask.tolist() == [False, True, True, True, False, False, False, False, True, True]


def test_ask2mask_starts_only_on_eligible_frames():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        confidence = torch.rand(80, generator=g)
        eligible = set(eligible_starts(confidence, 0.5).tolist())
        assert len(eligible) == 40  # distinct values: the upper half
        single = ask2mask_span_mask(confidence, 0.3, 1, generator=g)  # span 1: the mask is the set of starts
        assert set(torch.nonzero(single).flatten().tolist()) <= eligible
        spans = ask2mask_span_mask(confidence, 0.065, 10, generator=g)
        assert set(run_starts(spans).tolist()) <= eligible


def test_ask2mask_uses_every_eligible_start_when_too_few():
    confidence = torch.zeros(100)
    confidence[[5, 50, 90]] = 1.0  # 0.9-quantile = 0: all eligible; 0.99-quantile: only the three
    mask = ask2mask_span_mask(confidence, 0.5, 1, quantile=0.99, generator=torch.Generator().manual_seed(1))
    assert torch.nonzero(mask).flatten().tolist() == [5, 50, 90]


def test_constant_confidence_is_random_masking():
    """Same generator state -> the very same mask; and the starts are uniform over the frames (chi-squared)."""
    for seed in range(20):
        a = ask2mask_span_mask(torch.full((120,), 0.7), 0.065, 10, generator=torch.Generator().manual_seed(seed))
        b = random_span_mask(120, 0.065, 10, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(a, b)
    frames, draws = 50, 20000
    g = torch.Generator().manual_seed(0)
    guided, uniform = torch.zeros(frames), torch.zeros(frames)
    candidates = eligible_starts(torch.full((frames,), 0.3))
    for _ in range(draws):
        guided += torch.bincount(draw_starts(candidates, frames, 0.065, g), minlength=frames)
        uniform += torch.bincount(draw_starts(torch.arange(frames), frames, 0.065, g), minlength=frames)
    assert chisquare(guided.numpy()).pvalue > 0.001  # uniform over the 50 frames
    assert chi2_contingency(torch.stack([guided, uniform]).numpy()).pvalue > 0.001  # same as random's


def test_chi_squared_detects_guided_starts():
    """The test above can fail: with varying confidence the starts are far from uniform."""
    frames = 50
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(frames)
    candidates = eligible_starts(torch.linspace(0, 1, frames))
    for _ in range(2000):
        counts += torch.bincount(draw_starts(candidates, frames, 0.065, g), minlength=frames)
    assert chisquare(counts.numpy()).pvalue < 1e-6
    assert counts[:25].sum() == 0


@pytest.mark.parametrize("p, span", [(0.065, 10), (0.02, 5), (0.1, 3)])
def test_masked_fraction_matches_the_overlap_formula(p, span):
    g = torch.Generator().manual_seed(0)
    frames, draws = 1000, 400
    fraction = sum(float(random_span_mask(frames, p, span, g).float().mean()) for _ in range(draws)) / draws
    assert fraction == pytest.approx(1 - (1 - p) ** span, abs=0.01)
    confident_first_half = torch.linspace(1, 0, frames)
    guided = sum(float(ask2mask_span_mask(confident_first_half, p, span, generator=g).float().mean())
                 for _ in range(draws)) / draws
    # The same number of starts crowds into the confident half (density 2p there): spans overlap more.
    assert guided == pytest.approx(0.5 * (1 - (1 - 2 * p) ** span), abs=0.015)


def test_same_generator_state_same_mask():
    confidence = torch.rand(64, generator=torch.Generator().manual_seed(3))
    masks = [ask2mask_span_mask(confidence, 0.065, 10, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*masks)


@pytest.mark.parametrize("mask_prob", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_mask_prob_outside_zero_one_is_an_error(mask_prob):
    with pytest.raises(SpeechkitError, match=r"^mask_prob: expected a value in \(0, 1\)"):
        random_span_mask(100, mask_prob, 10)
    with pytest.raises(SpeechkitError, match="mask_prob"):
        ask2mask_span_mask(torch.rand(100), mask_prob, 10)


def test_span_longer_than_the_utterance_is_an_error():
    with pytest.raises(SpeechkitError, match=r"^span: 10 frames is longer than the utterance \(8 frames\)"):
        random_span_mask(8, 0.065, 10)
    with pytest.raises(SpeechkitError, match="longer than the utterance"):
        ask2mask_span_mask(torch.rand(8), 0.065, 10)
    with pytest.raises(SpeechkitError, match="span: expected >= 1"):
        random_span_mask(8, 0.065, 0)


def test_missing_or_bad_confidences_are_errors():
    with pytest.raises(SpeechkitError, match=r"^confidence: missing.*speechkit scorer-confidences"):
        ask2mask_span_mask(None, 0.065, 10)
    with pytest.raises(SpeechkitError, match="non-empty"):
        ask2mask_span_mask(torch.rand(4, 4), 0.065, 2)
    with pytest.raises(SpeechkitError, match=r"in \[0, 1\]"):
        ask2mask_span_mask(torch.tensor([0.5, float("nan"), 0.2]), 0.3, 1)
    with pytest.raises(SpeechkitError, match="quantile") as info:
        ask2mask_span_mask(torch.rand(20), 0.3, 1, quantile=1.5)
    assert "\n" not in str(info.value)
