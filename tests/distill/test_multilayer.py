import pytest
import torch

from speechkit.distill.multilayer import (
    MultiLayerDistiller,
    TeacherSpec,
    align_lengths,
    align_time,
    attention_kl,
    uniform_layer_map,
)
from speechkit.errors import SpeechkitError


def test_uniform_layer_map() -> None:
    assert uniform_layer_map(4, 12) == [3, 6, 9, 12]
    assert uniform_layer_map(2, 4) == [2, 4]
    assert uniform_layer_map(3, 3) == [1, 2, 3]


def test_align_time_by_pooling_and_interpolation() -> None:
    x = torch.arange(8.0).reshape(1, 8, 1)  # 0..7 at 50 Hz
    assert align_time(x, 4, "pool").flatten().tolist() == [0.5, 2.5, 4.5, 6.5]  # to 25 Hz: pair means
    y = torch.tensor([[[0.0], [2.0]]])
    assert align_time(y, 4, "interpolate").flatten().tolist() == [0.0, 0.5, 1.5, 2.0]
    assert align_lengths(torch.tensor([8, 5, 1]), 8, 4).tolist() == [4, 3, 1]


def test_attention_kl_zero_for_identical_and_ignores_masked_keys() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(2, 3, 4, 4, generator=g), -1)
    assert attention_kl(a, a).item() == pytest.approx(0.0, abs=1e-6)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    teacher = a.clone()
    teacher[0, :, :, 3] = 0  # the teacher puts no mass on the padded key
    teacher = teacher / teacher.sum(-1, keepdim=True)
    student = teacher.clone()
    student[0, :, :, 3] += 0.5  # extra mass on the padded key ...
    student[0, :, 3, :] = 0.25  # ... and a different padded query row
    assert attention_kl(student, teacher, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_two_teachers_at_other_frame_rates_reach_zero_at_the_true_projection() -> None:
    torch.manual_seed(0)
    student = [torch.randn(2, 8, 4) for _ in range(3)]  # (B, Ts=8, Ds=4), hidden_states of 2 layers
    w_a, w_b = torch.randn(4, 6), torch.randn(4, 5)
    teacher_a = [align_time(h @ w_a, 4, "pool") for h in student]  # 25 Hz teacher of width 6
    teacher_b = [h @ w_b for h in student]  # same rate, width 5
    distiller = MultiLayerDistiller(
        student_dim=4,
        teachers=[TeacherSpec("a", 6, {1: 1, 2: 2}), TeacherSpec("b", 5, {2: 2}, weight=0.5)],
        align="pool",
        align_to="teacher",
    )
    total, terms = distiller(student, {"a": teacher_a, "b": teacher_b})
    assert set(terms) == {"a/1->1", "a/2->2", "b/2->2"}
    assert total.item() == pytest.approx((terms["a/1->1"] + terms["a/2->2"] + 0.5 * terms["b/2->2"]).item())
    with torch.no_grad():  # the true linear maps make every term vanish
        for key, w in (("a__1", w_a), ("a__2", w_a), ("b__2", w_b)):
            distiller.projections[key].weight.copy_(w.T)
            distiller.projections[key].bias.zero_()
    assert distiller(student, {"a": teacher_a, "b": teacher_b})[0].item() < 1e-10
    assert total.item() > 0.1


def test_lengths_mask_padded_frames() -> None:
    distiller = MultiLayerDistiller(3, [TeacherSpec("t", 3, {0: 0})], project=False)
    s = torch.zeros(1, 4, 3)
    t = torch.zeros(1, 4, 3)
    t[0, 2:] = 10.0  # differs only in padded frames
    loss, _ = distiller([s], {"t": [t]}, student_lengths=torch.tensor([2]))
    assert loss.item() == 0.0


def test_missing_teacher_and_bad_specs() -> None:
    distiller = MultiLayerDistiller(3, [TeacherSpec("t", 3, {0: 0})])
    with pytest.raises(SpeechkitError, match="'t'"):
        distiller([torch.zeros(1, 2, 3)], {})
    with pytest.raises(SpeechkitError, match="project"):
        MultiLayerDistiller(3, [TeacherSpec("t", 4, {0: 0})], project=False)
