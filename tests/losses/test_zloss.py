"""Z-loss (de Brebisson & Vincent 2016) and the PaLM log Z penalty."""

from __future__ import annotations

import math

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.losses import CrossEntropyWithLogZPenalty, ZLoss, logz_squared


def test_hand_computed_value():
    # D=3, o=(1,2,3), target 2, a=b=1: mu=2, sigma=sqrt(2/3), z=sqrt(1.5), L=log(1+exp(1-z)).
    loss = ZLoss(a=1.0, b=1.0)(torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), torch.tensor([2]))
    assert loss.item() == pytest.approx(math.log1p(math.exp(1 - math.sqrt(1.5))), rel=1e-12)
    assert loss.item() == pytest.approx(0.58708, abs=1e-5)


def test_shift_and_scale_invariance():
    g = torch.Generator().manual_seed(0)
    o, y = torch.randn(8, 10, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g)
    loss = ZLoss(a=2.0, b=3.0, reduction="none")
    for alpha in (0.5, 7.0):
        for beta in (-3.0, 11.0):
            torch.testing.assert_close(loss(alpha * o + beta, y), loss(o, y), rtol=0, atol=1e-6)


def test_gradient_identities_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    o = torch.randn(5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 7, (5,), generator=g)
    loss = ZLoss(a=1.5, b=2.0)
    (grad,) = torch.autograd.grad(loss(o, y), o)
    torch.testing.assert_close(grad.sum(-1), torch.zeros(5, dtype=torch.float64), rtol=0, atol=1e-8)  # shift
    torch.testing.assert_close((o * grad).sum(-1), torch.zeros(5, dtype=torch.float64), rtol=0, atol=1e-8)  # Euler
    assert torch.autograd.gradcheck(lambda t: loss(t, y), (o,))


def test_ignore_index_and_reductions():
    o = torch.randn(2, 3, 4, dtype=torch.float64)
    y = torch.tensor([[0, 1, -100], [3, -100, 2]])
    per = ZLoss(reduction="none")(o, y)
    assert per.shape == (2, 3) and per[0, 2] == 0 and per[1, 1] == 0
    assert ZLoss()(o, y).item() == pytest.approx(per.sum().item() / 4)
    assert ZLoss(reduction="sum")(o, y).item() == pytest.approx(per.sum().item())


def test_logz_squared_is_the_palm_penalty():
    logits = torch.randn(4, 6, dtype=torch.float64)
    torch.testing.assert_close(logz_squared(torch.log_softmax(logits, -1)), torch.tensor(0.0, dtype=torch.float64))
    expected = 1e-4 * (torch.logsumexp(logits, -1) ** 2).mean()
    torch.testing.assert_close(logz_squared(logits), expected, rtol=1e-12, atol=0)
    mask = torch.tensor([True, False, True, False])
    torch.testing.assert_close(logz_squared(logits, coef=2.0, mask=mask),
                               2.0 * (torch.logsumexp(logits[mask], -1) ** 2).mean(), rtol=1e-12, atol=0)
    y = torch.tensor([0, 1, 2, -100])
    combined = CrossEntropyWithLogZPenalty(z_coef=0.5)(logits, y)
    expected = torch.nn.functional.cross_entropy(logits[:3], y[:3]) + 0.5 * (torch.logsumexp(logits[:3], -1) ** 2).mean()
    torch.testing.assert_close(combined, expected, rtol=1e-12, atol=0)


def test_bad_input():
    with pytest.raises(SpeechkitError, match="^a:"):
        ZLoss(a=0.0)
    with pytest.raises(SpeechkitError, match="^b:"):
        ZLoss(b=-1.0)
    with pytest.raises(SpeechkitError, match="targets"):
        ZLoss()(torch.randn(3, 4), torch.zeros(2, dtype=torch.long))
