"""Captioner-loss retrieval scores (Labbé et al., DCASE 2023): per-caption min-max normalisation, tie-breaking by the
raw loss (with the authors' argsort-as-rank bug shown), the prior-bias toy, T2A invariance to a caption's prior,
R@k / mAP@10 against hand-computed values, and one-line errors."""

from __future__ import annotations

import re

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.metrics.caption_retrieval import (
    break_ties,
    caption_retrieval_metrics,
    normalize_caption_losses,
    retrieval_scores,
    tie_break_ranks,
)


def test_normalisation_puts_every_column_in_0_1_with_min_0_and_max_1():
    loss = torch.rand(7, 11, generator=torch.Generator().manual_seed(0)) * 5 + 1
    normalized = normalize_caption_losses(loss)
    assert normalized.shape == (7, 11)
    assert torch.allclose(normalized.min(0).values, torch.zeros(11, dtype=torch.float64))
    assert torch.allclose(normalized.max(0).values, torch.ones(11, dtype=torch.float64))
    column = (loss[:, 3] - loss[:, 3].min()) / (loss[:, 3].max() - loss[:, 3].min())
    assert torch.allclose(normalized[:, 3], column.double())


def test_a_constant_column_becomes_zeros():
    loss = torch.tensor([[1.0, 2.0], [3.0, 2.0]])
    assert normalize_caption_losses(loss)[:, 1].tolist() == [0.0, 0.0]


def test_three_way_tie_breaks_to_the_lowest_raw_loss_and_argsort_as_ranks_does_not():
    # audio 0 is the best audio of all three captions: its A2T row is a three-way tie at L~ = 0
    loss = torch.tensor([[0.2, 0.3, 0.1], [1.0, 1.2, 0.9]])
    assert normalize_caption_losses(loss)[0].tolist() == [0.0, 0.0, 0.0]
    row = retrieval_scores(loss, "a2t")[0]
    assert row.argsort(descending=True).tolist() == [2, 0, 1]  # raw 0.1, 0.2, 0.3
    # the authors' code used ``argsort`` as the ranks: caption 1 (raw 0.3) would come first
    wrong_ranks = loss[0].argsort()
    assert int(wrong_ranks.argmin()) == 1
    assert tie_break_ranks(loss[0]).tolist() == [1, 2, 0]


def test_every_tie_group_is_ordered_by_raw_loss_without_crossing_groups():
    scores = torch.tensor([[0.0, -0.5, 0.0, -0.5, 0.0, 0.0, -1.0]])
    raw = torch.tensor([[-3.0, -1.0, -1.0, -2.0, -4.0, -2.0, -9.0]])
    out = break_ties(scores, raw)[0]
    assert out.argsort(descending=True).tolist() == [2, 5, 0, 4, 1, 3, 6]
    assert len(out.unique()) == 7
    assert (out <= scores[0].double()).all() and (out > scores[0].double() - 0.25).all()


def prior_bias_toy(audios: int = 12, per_audio: int = 5, seed: int = 0) -> tuple[torch.Tensor, list[int]]:
    """``L = prior(c) + mismatch(a, c)``; the last caption is generic (belongs to audio 0) with a very low prior."""
    g = torch.Generator().manual_seed(seed)
    owner = [a for a in range(audios) for _ in range(per_audio)] + [0]
    prior = torch.rand(len(owner), generator=g) + 2.0
    mismatch = torch.rand(audios, len(owner), generator=g) + 1.0
    mismatch[torch.tensor(owner[:-1]), torch.arange(len(owner) - 1)] = 0.0
    prior[-1] = 0.3
    mismatch[:, -1] = torch.rand(audios, generator=g) * 0.2 + 0.05
    mismatch[0, -1] = 0.0
    return prior[None, :] + mismatch, owner


def test_prior_bias_toy_raw_a2t_retrieves_the_generic_caption_normalised_recovers_the_pairs():
    loss, owner = prior_bias_toy()
    raw_top = retrieval_scores(loss, "a2t", normalize=False).argmax(1)
    assert (raw_top == loss.shape[1] - 1).float().mean() >= 0.9
    raw = caption_retrieval_metrics(loss, owner, "a2t", normalize=False)
    normalized = caption_retrieval_metrics(loss, owner, "a2t")
    assert raw["R@1"] <= 1 / 12 + 1e-9  # only audio 0, which owns the generic caption
    assert normalized["R@1"] == 1.0 and normalized["mAP@10"] == 1.0
    assert caption_retrieval_metrics(loss, owner, "t2a")["R@1"] == 1.0  # T2A needs no normalisation


def test_t2a_ranking_is_invariant_to_a_constant_added_per_caption():
    g = torch.Generator().manual_seed(1)
    loss = torch.rand(9, 20, generator=g)
    owner = [c % 9 for c in range(20)]
    shifted = loss + torch.randn(1, 20, generator=g) * 10
    order = retrieval_scores(loss, "t2a").argsort(1)
    assert retrieval_scores(loss, "t2a").shape == (20, 9)
    assert torch.equal(retrieval_scores(shifted, "t2a").argsort(1), order)
    assert torch.equal(retrieval_scores(loss, "t2a", normalize=True).argsort(1), order)
    assert caption_retrieval_metrics(shifted, owner, "t2a") == caption_retrieval_metrics(loss, owner, "t2a")


def test_r_at_k_and_map_at_10_against_hand_computed_values():
    # A2T, raw: audio 0's captions (0-4) at ranks 1 and 3 of its row, the three others at ranks 13-15;
    # audios 1 and 2 find their five captions at ranks 1-5
    owner = [0] * 5 + [1] * 5 + [2] * 5
    loss = torch.full((3, 15), 10.0)
    row0_order = [0, 5, 1, 6, 7, 8, 9, 10, 11, 12, 13, 14, 2, 3, 4]
    for position, c in enumerate(row0_order):
        loss[0, c] = float(position)
    for a in (1, 2):
        loss[a, 5 * a:5 * a + 5] = torch.arange(5.0)
    metrics = caption_retrieval_metrics(loss, owner, "a2t", normalize=False)
    assert metrics["R@1"] == 1.0 and metrics["queries"] == 3
    assert metrics["mAP@10"] == pytest.approx(((1 / 1 + 2 / 3) / 5 + 1 + 1) / 3)
    # T2A, raw: caption 0 finds audio 0 at rank 2 (AP 1/2), captions 1 and 2 find theirs first
    t2a = torch.tensor([[2.0, 5.0, 5.0], [1.0, 0.0, 9.0], [3.0, 9.0, 0.0]])
    assert caption_retrieval_metrics(t2a, [0, 1, 2], "t2a") == pytest.approx(
        {"R@1": 2 / 3, "R@5": 1.0, "R@10": 1.0, "mAP@10": (0.5 + 1 + 1) / 3, "queries": 3})


@pytest.mark.parametrize("loss, owner, direction, message", [
    (torch.rand(3, 4), [0, 0, 1, 1], "a2t", "audio 2 has no caption"),
    (torch.rand(3, 4), [0, 1, 2], "t2a", "audio_of_caption has 3 entries but loss has 4"),
    (torch.rand(3, 4), [0, 1, 2, 3], "a2t", "audio_of_caption[3] = 3"),
    (torch.rand(12), [0] * 12, "a2t", "expected an (audios, captions) matrix"),
    (torch.tensor([[0.1, float("nan")]]), [0, 0], "t2a", "loss[0, 1] = nan is not finite"),
    (torch.rand(2, 2), [0, 1], "both", "direction='both'"),
])
def test_bad_input_is_a_one_line_error(loss, owner, direction, message):
    with pytest.raises(SpeechkitError, match=re.escape(message)) as error:
        caption_retrieval_metrics(loss, owner, direction)
    assert "\n" not in str(error.value)
