"""The COCONUT contrastive losses against hand-written numpy references of the formulas in their docstrings."""

import numpy as np
import pytest
import torch

from speechkit.errors import SpeechkitError
from speechkit.losses.contrastive import (
    multimodal_contrastive_loss,
    nspt_loss,
    supervised_contrastive_loss,
)

LABELS = [0, 1, 0, 1, 2]  # class 2 has one sample: no positive in SupCon, only itself in NSPT / MM


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def supcon_reference(f: np.ndarray, y: list[int], t: float) -> float:
    z = _unit(f)
    losses = []
    for i in range(len(y)):
        pos = [p for p in range(len(y)) if p != i and y[p] == y[i]]
        if not pos:
            continue
        denominator = sum(np.exp(z[i] @ z[a] / t) for a in range(len(y)) if a != i)
        losses.append(-np.mean([np.log(np.exp(z[i] @ z[p] / t) / denominator) for p in pos]))
    return float(np.mean(losses))


def nspt_reference(s: np.ndarray, te: np.ndarray, y: list[int], t: float) -> float:
    zs, zt = _unit(s), _unit(te)
    losses = []
    for i in range(len(y)):
        pos = [p for p in range(len(y)) if y[p] == y[i]]
        neg = [a for a in range(len(y)) if y[a] != y[i]]
        denominator = sum(np.exp(zs[i] @ zt[p] / t) for p in pos) + sum(np.exp(zs[i] @ zs[a] / t) for a in neg)
        losses.append(-np.mean([np.log(np.exp(zs[i] @ zt[p] / t) / denominator) for p in pos]))
    return float(np.mean(losses))


def mm_reference(a: np.ndarray, w: np.ndarray, y: list[int], t: float) -> float:
    za, zw = _unit(a), _unit(w)

    def one_way(x: np.ndarray, other: np.ndarray) -> float:
        losses = []
        for i in range(len(y)):
            denominator = sum(np.exp(x[i] @ other[j] / t) for j in range(len(y)))
            pos = [p for p in range(len(y)) if y[p] == y[i]]
            losses.append(-np.mean([np.log(np.exp(x[i] @ other[p] / t) / denominator) for p in pos]))
        return float(np.mean(losses))

    return (one_way(za, zw) + one_way(zw, za)) / 2


def _features(seed: int, n: int = 5, d: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_supervised_contrastive_matches_numpy(t):
    f = _features(0)
    loss = supervised_contrastive_loss(torch.tensor(f), torch.tensor(LABELS), t)
    assert loss.item() == pytest.approx(supcon_reference(f, LABELS, t), abs=1e-5)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_nspt_matches_numpy(t):
    s, te = _features(1), _features(2)
    loss = nspt_loss(torch.tensor(s), torch.tensor(te), torch.tensor(LABELS), t)
    assert loss.item() == pytest.approx(nspt_reference(s, te, LABELS, t), abs=1e-5)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_multimodal_matches_numpy(t):
    a, w = _features(3), _features(4)
    loss = multimodal_contrastive_loss(torch.tensor(a), torch.tensor(w), torch.tensor(LABELS), t)
    assert loss.item() == pytest.approx(mm_reference(a, w, LABELS, t), abs=1e-5)


def test_losses_are_invariant_to_feature_scale():
    a, b = torch.tensor(_features(5)), torch.tensor(_features(6))
    y = torch.tensor(LABELS)
    scale = torch.tensor([3.0, 0.2, 7.0, 1.5, 40.0])[:, None]  # per-sample scales, not only a global one
    assert supervised_contrastive_loss(a * scale, y).item() == pytest.approx(supervised_contrastive_loss(a, y).item())
    assert nspt_loss(a * scale, b * 9.0, y).item() == pytest.approx(nspt_loss(a, b, y).item())
    assert multimodal_contrastive_loss(a * 0.01, b * scale, y).item() == pytest.approx(
        multimodal_contrastive_loss(a, b, y).item())


def test_no_gradient_reaches_the_teacher():
    teacher_net = torch.nn.Linear(4, 4)
    x = torch.tensor(_features(7), dtype=torch.float32)
    student = torch.tensor(_features(8), dtype=torch.float32, requires_grad=True)
    nspt_loss(student, teacher_net(x), torch.tensor(LABELS)).backward()
    assert teacher_net.weight.grad is None and teacher_net.bias.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_nspt_falls_when_student_moves_toward_its_class_teacher():
    s, te = torch.tensor(_features(9)), torch.tensor(_features(10))
    y = torch.tensor(LABELS)
    closer = s.clone()
    closer[0] = 0.3 * s[0] + 0.7 * te[[0, 2]].mean(0) * s[0].norm() / te[[0, 2]].mean(0).norm()
    assert nspt_loss(closer, te, y) < nspt_loss(s, te, y)


def test_multimodal_permutation_within_a_class_and_class_swap():
    a, w = torch.tensor(_features(11, n=6)), torch.tensor(_features(12, n=6))
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    base = multimodal_contrastive_loss(a, w, y)
    assert multimodal_contrastive_loss(a, w[[1, 0, 3, 2, 5, 4]], y).item() == pytest.approx(base.item())
    # align the texts with their class first, then give class 0's texts to class 1 and back: the loss rises
    aligned = a + 0.1 * w
    assert multimodal_contrastive_loss(aligned, aligned[[2, 3, 0, 1, 4, 5]], y) > multimodal_contrastive_loss(
        aligned, aligned, y)


def test_supervised_contrastive_without_positives_is_zero_with_gradient():
    f = torch.randn(3, 4, requires_grad=True)
    loss = supervised_contrastive_loss(f, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(f.grad, torch.zeros_like(f))


@pytest.mark.parametrize("call, message", [
    (lambda: supervised_contrastive_loss(torch.randn(4), torch.zeros(4)), r"features must be \(N, D\)"),
    (lambda: supervised_contrastive_loss(torch.randn(4, 2), torch.zeros(3)), r"labels must be \(N,\)"),
    (lambda: nspt_loss(torch.randn(4, 2), torch.randn(4, 3), torch.zeros(4)), "same shape"),
    (lambda: multimodal_contrastive_loss(torch.randn(4, 2), torch.randn(4, 2), torch.zeros(4), 0.0), "temperature"),
])
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(SpeechkitError, match=message):
        call()
