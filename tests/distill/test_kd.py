import math

import pytest
import torch
from torch.nn import functional as F

from speechkit.distill.kd import KDLoss, kd_loss, token_mask
from speechkit.errors import SpeechkitError
from speechkit.losses.kl_top import kl_top


def test_two_class_hand_value() -> None:
    student = torch.log(torch.tensor([[0.5, 0.5]]))
    teacher = torch.log(torch.tensor([[0.9, 0.1]]))
    forward = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    reverse = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kd_loss(student, teacher).item() == pytest.approx(forward, rel=1e-6)
    assert kd_loss(student, teacher, direction="reverse").item() == pytest.approx(reverse, rel=1e-6)


def test_matches_torch_kl_div_with_temperature() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 11, generator=g), torch.randn(6, 11, generator=g)
    temperature = 2.5
    reference = F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1), reduction="batchmean")
    assert kd_loss(s, t, temperature=temperature).item() == pytest.approx(temperature**2 * reference.item(), rel=1e-5)


def test_mask_excludes_padding_and_averages_over_kept_tokens() -> None:
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 5, 7, generator=g), torch.randn(2, 5, 7, generator=g)
    labels = torch.tensor([[1, 2, 3, -100, -100], [4, 5, -100, -100, -100]])
    mask = token_mask(labels)
    loss = kd_loss(s, t, mask=mask)
    s2 = s.clone()
    s2[~mask] = 100 * torch.randn(int((~mask).sum()), 7)  # change padded positions only
    assert kd_loss(s2, t, mask=mask).item() == pytest.approx(loss.item(), rel=1e-6)
    assert loss.item() == pytest.approx(kd_loss(s[mask], t[mask]).item(), rel=1e-6)
    assert kd_loss(s, t, mask=mask, reduction="none")[~mask].abs().sum() == 0


def test_top_k_equals_full_kl_at_k_equal_v_and_kl_top_otherwise() -> None:
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(4, 9, generator=g), torch.randn(4, 9, generator=g)
    assert kd_loss(s, t, top_k=9).item() == pytest.approx(kd_loss(s, t).item(), rel=1e-6)
    assert kd_loss(s, t, top_k=3).item() == pytest.approx(kl_top(s, t, k=3).item(), rel=1e-6)
    noise_outside = s.clone()
    top = t.topk(3, dim=-1).indices
    s_equal_on_top = torch.randn(4, 9, generator=g)
    s_equal_on_top.scatter_(-1, top, t.gather(-1, top))
    assert kd_loss(s_equal_on_top, t, top_k=3).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(noise_outside, t).item() > 0


def test_gradient_flows_to_student_only_and_zero_at_identity() -> None:
    s = torch.randn(3, 5, requires_grad=True)
    t = torch.randn(3, 5, requires_grad=True)
    KDLoss(temperature=2.0)(s, t).backward()
    assert s.grad is not None and t.grad is None
    assert kd_loss(t.detach(), t.detach()).item() == pytest.approx(0.0, abs=1e-7)


def test_bad_arguments() -> None:
    with pytest.raises(SpeechkitError, match="temperature"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0)
    with pytest.raises(SpeechkitError, match="shape"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(SpeechkitError, match="direction"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), direction="sideways")  # type: ignore[arg-type]
