"""Ask2Mask's utterance-weighted masked-prediction loss (speechkit.losses.masked), speech.md section 3 (f)."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.losses.masked import masked_frame_loss


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    losses = torch.rand(4, 30, generator=g, dtype=torch.float64) * 5
    mask = torch.rand(4, 30, generator=g) < 0.4
    return losses, mask


def test_weights_of_one_equal_the_unweighted_loss_exactly():
    losses, mask = batch()
    plain = masked_frame_loss(losses, mask)
    assert masked_frame_loss(losses, mask, torch.ones(4, dtype=torch.float64)).item() == plain.item()
    assert plain.item() == pytest.approx(losses[mask].mean().item(), rel=1e-12)


def test_hand_computed_value():
    losses = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, False, True], [False, True, False]])
    weights = torch.tensor([0.5, 0.25])
    expected = (0.5 * (1 + 3) + 0.25 * 5) / 3
    assert masked_frame_loss(losses, mask, weights).item() == pytest.approx(expected)


def test_gradient_of_one_utterance_scales_with_its_weight():
    losses, mask = batch(1)
    grads = []
    for u0 in (1.0, 0.5, 0.25):
        frames = losses.clone().requires_grad_(True)
        masked_frame_loss(frames, mask, torch.tensor([u0, 1.0, 1.0, 1.0], dtype=torch.float64)).backward()
        grads.append(frames.grad)
    torch.testing.assert_close(grads[1][0], 0.5 * grads[0][0])
    torch.testing.assert_close(grads[2][0], 0.25 * grads[0][0])
    torch.testing.assert_close(grads[2][1:], grads[0][1:])
    assert torch.all(grads[0][~mask] == 0)


def test_unmasked_values_are_not_read_and_no_mask_gives_zero():
    losses, mask = batch(2)
    poisoned = losses.masked_fill(~mask, float("nan"))
    assert masked_frame_loss(poisoned, mask).item() == pytest.approx(masked_frame_loss(losses, mask).item())
    frames = losses.clone().requires_grad_(True)
    zero = masked_frame_loss(frames, torch.zeros_like(mask))
    assert zero.item() == 0.0 and zero.requires_grad


def test_shape_errors_are_one_line():
    losses, mask = batch()
    with pytest.raises(SpeechkitError, match="same"):
        masked_frame_loss(losses, mask[:, :10])
    with pytest.raises(SpeechkitError, match="bool"):
        masked_frame_loss(losses, mask.float())
    with pytest.raises(SpeechkitError, match=r"utterance_weights: expected shape \(4,\)"):
        masked_frame_loss(losses, mask, torch.ones(3))


def test_contrastive_loss_hand_computed_and_zero_off_the_mask():
    from speechkit.losses.masked import contrastive_frame_losses

    context = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    targets = torch.tensor([[[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]])
    mask = torch.tensor([[True, True, False]])
    losses = contrastive_frame_losses(context, targets, mask, num_distractors=1, temperature=0.5)
    # frame 0: positive cos 1, its only distractor (frame 1) cos 0: -log(e^2 / (e^2 + e^0))
    expected = -math.log(math.exp(2) / (math.exp(2) + 1))
    torch.testing.assert_close(losses, torch.tensor([[expected, expected, 0.0]]))


def test_contrastive_loss_leaves_out_distractors_with_the_positive_target_id():
    from speechkit.losses.masked import contrastive_frame_losses

    g = torch.Generator().manual_seed(0)
    context, targets = torch.randn(1, 6, 4, generator=g), torch.randn(1, 6, 4, generator=g)
    mask = torch.ones(1, 6, dtype=torch.bool)
    same = contrastive_frame_losses(context, targets, mask, 5, target_ids=torch.zeros(1, 6, dtype=torch.long))
    assert torch.equal(same, torch.zeros(1, 6))  # every distractor is the positive's id: -log(1)
    single = contrastive_frame_losses(context, targets, torch.tensor([[True] + [False] * 5]), 5)
    assert torch.equal(single, torch.zeros(1, 6))
