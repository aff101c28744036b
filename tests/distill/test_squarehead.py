import pytest
import torch

from speechkit.distill.squarehead import BF16_EPS, SquareHeadLoss, squarehead_loss, squarehead_terms
from speechkit.errors import SpeechkitError


def _hidden(seed: int, layers: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 6, 8, generator=g) for _ in range(layers + 1)]  # embedding output + 4 blocks


def test_zero_for_identical_features() -> None:
    h = _hidden(0)
    assert squarehead_loss(h, h).item() == 0.0


def test_zero_student_gives_about_one_per_layer() -> None:
    teacher = _hidden(0)
    terms = squarehead_terms([torch.zeros_like(x) for x in teacher], teacher)
    assert terms.shape == (4,)  # the embedding output is skipped
    m = torch.stack([x.pow(2).mean() for x in teacher[1:]])
    assert torch.allclose(terms, m / (m + BF16_EPS), rtol=1e-6)  # m / (m + eps), about 1


def test_invariant_to_scaling_teacher_and_student_together() -> None:
    s, t = _hidden(1), _hidden(2)
    base = squarehead_loss(s, t, eps=0.0)
    for c in (1e-3, 7.0, 1e3):
        scaled = squarehead_loss([c * x for x in s], [c * x for x in t], eps=0.0)
        assert scaled.item() == pytest.approx(base.item(), rel=1e-5)


def test_hand_value_of_one_layer() -> None:
    t = [torch.zeros(1, 2, 2), torch.tensor([[[1.0, 1.0], [1.0, 1.0]]])]
    s = [torch.zeros(1, 2, 2), torch.tensor([[[0.0, 1.0], [1.0, 3.0]]])]
    # mean((s - t)^2) = (1 + 0 + 0 + 4) / 4 = 1.25; mean(t^2) = 1
    assert squarehead_loss(s, t, eps=0.0).item() == pytest.approx(1.25)


def test_padded_positions_do_not_change_the_loss() -> None:
    s, t = _hidden(3), _hidden(4)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    loss = SquareHeadLoss()(s, t, mask)
    s2 = [x.clone() for x in s]
    t2 = [x.clone() for x in t]
    for a, b in zip(s2, t2):
        a[~mask] = 50.0
        b[~mask] = -9.0
    assert SquareHeadLoss()(s2, t2, mask).item() == pytest.approx(loss.item(), rel=1e-6)


def test_layer_count_mismatch_is_an_error() -> None:
    with pytest.raises(SpeechkitError, match="layers"):
        squarehead_loss(_hidden(0, 3), _hidden(0, 4))
