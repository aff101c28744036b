"""ND loss (Wang et al. 2023): hand cases and the official per-sample loop."""

from __future__ import annotations

import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.losses import NDLoss, class_centers


def _official_loop(s_emb, t_emb, centers, labels):
    """CIFAR/utils.py::DirectNormLoss.project_center / forward of the official repo, as a per-sample loop."""
    loss = 0.0
    for s, t, i in zip(s_emb, t_emb, labels):
        center = centers[int(i)]
        e_c = center / center.norm(p=2)
        max_norm = max(s.norm(p=2), t.norm(p=2))
        loss += 1 - torch.dot(s, e_c) / max_norm
    return loss / len(labels)


def test_zero_on_the_centre_direction_with_large_norm_and_one_when_orthogonal():
    centers = torch.tensor([[3.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    loss = NDLoss(centers)
    teacher = torch.tensor([[1.0, 1.0]], dtype=torch.float64)  # ||f_t|| = sqrt(2)
    assert loss(torch.tensor([[2.0, 0.0]], dtype=torch.float64), teacher, torch.tensor([0])).item() == 0.0
    small = loss(torch.tensor([[1.0, 0.0]], dtype=torch.float64), teacher, torch.tensor([0])).item()
    assert small == pytest.approx(1 - 1 / 2 ** 0.5)  # ||f_t|| > alpha: 1 - alpha / ||f_t||
    assert loss(torch.tensor([[0.0, 5.0]], dtype=torch.float64), teacher, torch.tensor([0])).item() == 1.0


def test_vectorised_equals_official_loop_and_weight():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 8, generator=g, dtype=torch.float64)
    s, t = torch.randn(16, 8, generator=g, dtype=torch.float64), torch.randn(16, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (16,), generator=g)
    torch.testing.assert_close(NDLoss(centers)(s, t, y), _official_loop(s, t, centers, y), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(NDLoss(centers, weight=4.0)(s, t, y), 4.0 * _official_loop(s, t, centers, y))


def test_class_centers_and_errors():
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    torch.testing.assert_close(class_centers(feats, torch.tensor([0, 0, 1]), 2), torch.tensor([[2.0, 1.0], [0.0, 4.0]]))
    with pytest.raises(SpeechkitError, match="missing \\[2\\]"):
        class_centers(feats, torch.tensor([0, 0, 1]), 3)
    with pytest.raises(SpeechkitError, match="student, teacher"):
        NDLoss(torch.randn(2, 3))(torch.randn(4, 3), torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
