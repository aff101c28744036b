"""CoconutTask: the teacher snapshot, which loss terms a batch gets, masking of unseen classes, errors."""

import pytest
import torch

from speechkit.data import DataConfig, SpeechDataset
from speechkit.errors import SpeechkitError
from speechkit.losses.contrastive import nspt_loss
from speechkit.tasks.coconut import CoconutTask, TextEncoder
from tests.continual.conftest import switch_tone_corpus

LABELS = ["c0", "c1", "c2", "c3"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    cuts = switch_tone_corpus(tmp_path_factory.mktemp("tones"), "train", per_class=3)
    return SpeechDataset(DataConfig(input="fbank", num_mel_bins=40))[cuts]


def task(**kwargs) -> CoconutTask:
    torch.manual_seed(0)
    return CoconutTask(LABELS, num_mel_bins=40, hidden=16, num_layers=2, proj_dim=8, text_hidden=8, **kwargs)


def test_first_task_has_no_teacher_and_masks_unseen_classes(batch):
    model = task()
    model.begin_task(["c0", "c1"])
    assert model.teacher is None and model.old.tolist() == [False] * 4
    logits = model(batch.inputs, batch.input_lens)
    assert (logits[:, 2:] == -1e4).all()
    assert set(model.predict_classes(batch.inputs, batch.input_lens).tolist()) <= {0, 1}


def test_teacher_is_a_frozen_copy_outside_the_parameters_and_the_checkpoint():
    model = task(kd_weight=1.0)
    model.begin_task(["c0", "c1"])
    model.begin_task(["c0", "c1", "c2", "c3"], ["x"])
    teacher = model.teacher
    assert model.old.tolist() == [True, True, False, False] and model.active.all()
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not {id(p) for p in teacher.parameters()} & {id(p) for p in model.parameters()}
    assert not any(key.startswith("_teacher") for key in model.state_dict())
    before = teacher["head"].weight.clone()
    with torch.no_grad():
        model.head.weight.add_(1.0)
    assert torch.equal(teacher["head"].weight, before)


def test_fine_tuning_batch_has_only_cross_entropy(batch):
    model = task()
    model.begin_task(["c0", "c1"])
    model.begin_task(LABELS, batch.cut_ids[:4])
    assert set(model.losses(batch)) == {"ce"}


def test_coconut_batch_has_every_term_and_nspt_is_on_rehearsal_rows(batch):
    model = task(kd_weight=1.0, kd_on="rehearsal", nspt_weight=0.1, mm_weight=0.1)
    model.begin_task(["c0", "c1"])
    rehearsal = [cut_id for cut_id, custom in zip(batch.cut_ids, batch.custom) if custom["intent"] in ("c0", "c1")]
    model.begin_task(LABELS, rehearsal)
    terms = model.losses(batch)
    assert set(terms) == {"ce", "kd", "nspt", "mm"}
    rows = torch.tensor([cut_id in rehearsal for cut_id in batch.cut_ids])
    with torch.no_grad():
        student = model.projector(model.features(batch.inputs, batch.input_lens))[rows]
        teacher = model.teacher["projector"](model.teacher["encoder"](batch.inputs, batch.input_lens))[rows]
    expected = nspt_loss(student, teacher, model.targets(batch)[rows], 0.1)
    assert terms["nspt"].item() == pytest.approx(expected.item(), abs=1e-6)
    loss = sum(terms.values())
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.encoder.blocks[0].conv.weight.grad.abs().sum() > 0
    assert model.text_encoder.embed.weight.grad.abs().sum() > 0


def test_kd_term_is_zero_when_student_equals_teacher(batch):
    model = task(kd_weight=1.0)
    model.begin_task(["c0", "c1"])
    model.begin_task(LABELS, [])
    assert model.losses(batch)["kd"].item() == pytest.approx(0.0, abs=1e-6)


def test_text_encoder_takes_any_text():
    out = TextEncoder(8, 4)(["set an alarm for 7", "", "café ☕"])
    assert out.shape == (3, 4) and torch.isfinite(out).all()


def test_training_step_learns_the_first_task(batch):
    """60 steps on two classes: the loss falls below a fifth of its start and the batch is classified right."""
    model = task(mm_weight=0.1)
    model.begin_task(["c0", "c1"])
    rows = [i for i, c in enumerate(batch.custom) if c["intent"] in ("c0", "c1")]
    from dataclasses import replace

    sub = replace(batch, inputs=batch.inputs[rows], input_lens=batch.input_lens[rows],
                  texts=[batch.texts[i] for i in rows], cut_ids=[batch.cut_ids[i] for i in rows],
                  custom=[batch.custom[i] for i in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss = model.losses(sub)["ce"]
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        (loss + 0.1 * model.losses(sub)["mm"]).backward()
        optimizer.step()
    assert loss.item() < first / 5
    assert (model.predict_classes(sub.inputs, sub.input_lens) == model.targets(sub)).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"kd_weight": -1.0}, "kd_weight must be >= 0"),
    ({"kd_on": "some"}, "kd_on"),
    ({"temperature": 0.0}, "temperature"),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(SpeechkitError, match=message):
        task(**kwargs)


def test_begin_task_errors():
    model = task()
    with pytest.raises(SpeechkitError, match=r"classes \['zz'\] are not among"):
        model.begin_task(["zz"])
    model.begin_task(["c0", "c1"])
    with pytest.raises(SpeechkitError, match="must include every class of the earlier tasks"):
        model.begin_task(["c2", "c3"])


def test_unknown_label_names_the_cut(batch):
    model = CoconutTask(["a", "b"], num_mel_bins=40, hidden=8, num_layers=1)
    with pytest.raises(SpeechkitError, match=r"cut '\w+': label 'c\d' \(intent\) is not one of"):
        model.targets(batch)
