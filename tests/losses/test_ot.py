"""Sinkhorn divergence (speechkit.losses.ot) against exact optimal transport and its defining properties."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from speechkit.errors import SpeechkitError
from speechkit.losses.ot import epsilon_schedule, sinkhorn_divergence


def clouds(batch: int, m: int, n: int, dim: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, m, dim, generator=generator, dtype=torch.float64),
            torch.randn(batch, n, dim, generator=generator, dtype=torch.float64))


def exact_ot(x: np.ndarray, y: np.ndarray) -> float:
    """``min_sigma 1/n sum_i |x_i - y_sigma(i)|^2 / 2`` for equal uniform clouds (an assignment problem)."""
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / 2
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def test_single_points_give_half_squared_distance():
    x, y = torch.tensor([[[1.0, 2.0]]]), torch.tensor([[[4.0, -2.0]]])  # the only plan moves all mass: 25 / 2
    assert sinkhorn_divergence(x, y).item() == pytest.approx(12.5, rel=1e-6)
    assert sinkhorn_divergence(x, y, debias=False).item() == pytest.approx(12.5, rel=1e-6)


@pytest.mark.parametrize("position_weight", [0.0, 1.0])
def test_zero_on_identical_clouds(position_weight):
    x, _ = clouds(3, 7, 7)
    assert sinkhorn_divergence(x, x.clone(), position_weight=position_weight).abs().max() < 1e-6


def test_non_negative_and_symmetric():
    x, y = clouds(4, 6, 9, seed=1)
    forward, backward = sinkhorn_divergence(x, y, position_weight=1.0), sinkhorn_divergence(y, x, position_weight=1.0)
    assert (forward > 0).all()
    torch.testing.assert_close(forward, backward, atol=1e-8, rtol=1e-8)
    shifted = sinkhorn_divergence(x, x + 0.01)  # a close cloud: small but positive
    assert (shifted > 0).all() and (shifted < 1e-3).all()


def test_time_reversal_costs_more_with_positions():
    x, _ = clouds(2, 8, 8, seed=2)
    reversed_x = x.flip(1)  # the same set of points, in the opposite order
    assert sinkhorn_divergence(x, reversed_x).abs().max() < 1e-6
    with_positions = sinkhorn_divergence(x, reversed_x, position_weight=1.0)
    assert (with_positions > 1e-2).all()
    assert (sinkhorn_divergence(x, reversed_x, position_weight=2.0) > with_positions).all()


@pytest.mark.parametrize("position_weight", [0.0, 1.0])
def test_batched_with_masks_equals_the_loop_over_utterances(position_weight):
    x, y = clouds(4, 9, 12, dim=5, seed=3)
    x_lens, y_lens = [9, 3, 6, 1], [5, 12, 2, 7]
    x = x * torch.tensor([0.5, 1.0, 3.0, 1.0])[:, None, None]  # different diameters: different schedules
    x_mask = torch.arange(9)[None] < torch.tensor(x_lens)[:, None]
    y_mask = torch.arange(12)[None] < torch.tensor(y_lens)[:, None]
    x_padded = x.masked_fill(~x_mask[..., None], 100.0)  # padding values must not matter
    y_padded = y.masked_fill(~y_mask[..., None], -7.0)
    batched = sinkhorn_divergence(x_padded, y_padded, x_mask, y_mask, position_weight=position_weight)
    looped = torch.cat([
        sinkhorn_divergence(x[b:b + 1, :m], y[b:b + 1, :n], position_weight=position_weight)
        for b, (m, n) in enumerate(zip(x_lens, y_lens))
    ])
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=0)


def test_agrees_with_exact_ot_as_blur_goes_to_zero():
    """With scaling near 1 the annealing converges; GeomLoss's (and the paper's) scaling 0.5 stops after a few
    iterations, a few per cent off the exact value on these clouds."""
    x, y = clouds(1, 6, 6, dim=2, seed=4)
    exact = exact_ot(x[0].numpy(), y[0].numpy())
    errors = [abs(sinkhorn_divergence(x, y, blur=blur, scaling=0.99).item() - exact) for blur in (0.3, 0.1, 0.01)]
    assert errors[0] > errors[1] > 0 and errors[2] < 1e-6
    not_debiased = [sinkhorn_divergence(x, y, blur=blur, scaling=0.99, debias=False).item() for blur in (0.1, 0.01)]
    assert abs(not_debiased[1] - exact) < 1e-3 < abs(not_debiased[0] - exact)  # the entropic bias, debiased above
    assert abs(sinkhorn_divergence(x, y, blur=0.01).item() - exact) < 0.1 * exact


def test_duplicating_text_vectors_leaves_the_divergence_unchanged():
    x, y = clouds(2, 10, 4, seed=5)
    for k in (2, 3):
        duplicated = y.repeat_interleave(k, dim=1)  # the same empirical measure, k times the frames
        torch.testing.assert_close(sinkhorn_divergence(x, duplicated), sinkhorn_divergence(x, y), atol=1e-5, rtol=0)


def test_float32_gradient_is_finite_and_pulls_clouds_together():
    torch.manual_seed(0)
    x = torch.randn(2, 12, 8, requires_grad=True)
    y = torch.randn(2, 7, 8) + 1.0
    optimizer = torch.optim.SGD([x], lr=2.0)
    first = None
    for _ in range(30):
        loss = sinkhorn_divergence(x, y, position_weight=1.0).mean()
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        assert torch.isfinite(x.grad).all()
        optimizer.step()
    assert loss.item() < 0.2 * first


def test_schedule_is_geomloss_s():
    assert epsilon_schedule(4.0, 0.5, 0.5) == pytest.approx([16.0, 16.0, 4.0, 1.0, 0.25])
    assert epsilon_schedule(0.01, 0.05, 0.5) == pytest.approx([1e-4, 0.0025])  # diameter below blur


def test_bad_input_is_a_clear_error():
    x, y = clouds(2, 4, 5)
    with pytest.raises(SpeechkitError, match="same batch size B and feature size D"):
        sinkhorn_divergence(x, y[..., :2])
    with pytest.raises(SpeechkitError, match=r"y utterances \[1\] are all padding"):
        sinkhorn_divergence(x, y, y_mask=torch.tensor([[True] * 5, [False] * 5]))
    with pytest.raises(SpeechkitError, match="x_mask"):
        sinkhorn_divergence(x, y, x_mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(SpeechkitError, match=r"expected x \(B, M, D\)"):
        sinkhorn_divergence(x[0], y[0])
    with pytest.raises(SpeechkitError, match="blur > 0"):
        sinkhorn_divergence(x, y, blur=0.0)
