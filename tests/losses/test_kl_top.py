"""KL-Top (OSTQuant): full KL at K=V, zero when the top-K renormalised distributions coincide."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.losses import KLTop, kl_top


def test_k_equal_vocabulary_is_full_kl():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 4, 11, generator=g, dtype=torch.float64), torch.randn(3, 4, 11, generator=g, dtype=torch.float64)
    for temperature in (1.0, 2.0):
        full = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1), log_target=True,
                        reduction="none").sum(-1).mean()
        torch.testing.assert_close(kl_top(s, t, k=11, temperature=temperature), full, rtol=1e-10, atol=1e-12)


def test_zero_when_student_differs_only_outside_top_k():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(6, 20, generator=g, dtype=torch.float64)
    outside = torch.ones_like(t, dtype=torch.bool).scatter(-1, t.topk(5, -1).indices, False)
    s = t + 3.0 + torch.where(outside, torch.randn(6, 20, generator=g, dtype=torch.float64), 0.0)
    assert kl_top(s, t, k=5).item() == pytest.approx(0.0, abs=1e-12)
    assert kl_top(s, t, k=6).item() > 1e-4  # the noisy class enters the set


def test_mask_gradient_and_errors():
    s = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 7, dtype=torch.float64)
    mask = torch.tensor([[True, False, True], [False, False, True]])
    per = torch.stack([kl_top(s[i, j], t[i, j], 4) for i in range(2) for j in range(3) if mask[i, j]])
    torch.testing.assert_close(KLTop(k=4)(s, t, mask), per.mean())
    assert torch.autograd.gradcheck(lambda x: kl_top(x, t, 4), (s,))
    with pytest.raises(SpeechkitError, match="^k:"):
        KLTop(k=0)
    with pytest.raises(SpeechkitError, match="student_logits, teacher_logits"):
        kl_top(torch.randn(2, 5), torch.randn(2, 6), 3)
