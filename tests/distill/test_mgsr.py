import pytest
import torch
from torch.nn import functional as F

from speechkit.distill.kd import kd_loss
from speechkit.distill.mgsr import DACKL, scrg_revise, span_correlation_loss, word_spans
from speechkit.errors import SpeechkitError
from speechkit.models.mtp import greedy_generate

V, EOS = 8, 7


def bigram(next_token: dict[int, int]):
    """A Forward whose logits at each position put mass 4 on ``next_token[current]`` (and a little elsewhere)."""
    table = torch.zeros(V, V)
    for current, following in next_token.items():
        table[current, following] = 4.0
    table += torch.linspace(0, 0.1, V)  # no ties

    def forward(ids, attention_mask):
        return table[ids], None

    return forward


STUDENT = {1: 2, 2: 3, 3: 4, 4: 6, 5: 6, 6: 7}
TEACHER = {**STUDENT, 3: 5}


def student_generate(prefix, max_new):
    return greedy_generate(bigram(STUDENT), prefix, max_new, eos_id=EOS)


def test_scrg_with_teacher_equal_to_student_keeps_the_sequence():
    response = student_generate([1], 10)
    assert response == [2, 3, 4, 6, 7]
    assert scrg_revise([1], response, bigram(STUDENT), bigram(STUDENT), student_generate, 10, EOS) == response


def test_scrg_corrects_the_diverging_position_and_regenerates_the_suffix():
    response = student_generate([1], 10)
    revised = scrg_revise([1], response, bigram(STUDENT), bigram(TEACHER), student_generate, 10, EOS)
    assert revised == [2, 3, 5, 6, 7]
    assert scrg_revise([1], response, bigram(STUDENT), bigram(TEACHER), student_generate, 10, EOS,
                       corrections=0) == response


def test_dackl_without_clipping_is_the_kl():
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 5, V) * 3, torch.randn(3, 5, V) * 3
    loss = DACKL(top_k=V, clip=False)(student, teacher)
    assert loss.item() == pytest.approx(kd_loss(student, teacher).item(), rel=1e-5)


def test_dackl_with_the_whole_region_is_close_to_the_kl_and_zero_at_the_target():
    torch.manual_seed(1)
    student, teacher = torch.randn(4, V) * 3, torch.randn(4, V) * 3
    loss_fn = DACKL(top_k=V, tau=1e-3, mass_weight=0.0)
    with torch.no_grad():  # bounds l -> 0, u -> 1
        loss_fn.bounds[2].weight.zero_()
        loss_fn.bounds[2].bias.copy_(torch.tensor([-30.0, 30.0]))
    assert loss_fn(student, teacher).item() == pytest.approx(kd_loss(student, teacher).item(), abs=1e-4)
    assert loss_fn(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_dackl_bounds_learn_and_clip_the_tail():
    torch.manual_seed(2)
    student, teacher = torch.randn(6, V, requires_grad=True), torch.randn(6, V) * 4
    loss_fn = DACKL(top_k=V)
    loss_fn(student, teacher).backward()
    assert loss_fn.bounds[0].weight.grad.abs().sum() > 0 and student.grad.abs().sum() > 0
    region = loss_fn.region(F.softmax(teacher, -1))
    assert bool((region >= 0).all()) and bool((region <= 1).all())


def test_span_loss_hand_value_and_zeros():
    torch.manual_seed(3)
    student, teacher = torch.randn(1, 4, V), torch.randn(1, 4, V)
    spans = torch.tensor([[0, 0, 1, 1]])  # pairs (0, 1) and (2, 3)
    p_s, p_t = F.softmax(student, -1)[0], F.softmax(teacher, -1)[0]
    expected = sum(((p_s[i] * p_s[i + 1] - p_t[i] * p_t[i + 1]) ** 2).mean() for i in (0, 2)) / 2
    assert span_correlation_loss(student, teacher, spans).item() == pytest.approx(expected.item(), rel=1e-5)
    assert span_correlation_loss(teacher, teacher, spans).item() == 0.0
    assert span_correlation_loss(student, teacher, torch.tensor([[0, 1, 2, 3]])).item() == 0.0


def test_word_spans_break_after_punctuation():
    assert word_spans(["turn", " on,", " the", " lights", ".", " now"]) == [0, 0, 1, 1, 1, 2]


def test_bad_input_is_clear():
    with pytest.raises(SpeechkitError, match="same shape"):
        DACKL(top_k=V)(torch.zeros(2, V), torch.zeros(3, V))
    with pytest.raises(SpeechkitError, match="span_ids"):
        span_correlation_loss(torch.zeros(1, 3, V), torch.zeros(1, 3, V), torch.zeros(1, 4, dtype=torch.long))
