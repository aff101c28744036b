"""WhisperDistill on a tiny random Whisper: student surgery, KD learning, checkpoint round trip, bad input."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from speechkit.data.batches import SpeechBatch
from speechkit.errors import SpeechkitError
from speechkit.tasks.whisper_distill import WhisperDistill


pytestmark = pytest.mark.usefixtures("one_thread")

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from speechkit.testing import tiny_whisper_dir

    return tiny_whisper_dir(tmp_path_factory.mktemp("tiny") / "whisper", multilingual=False)


@pytest.fixture(scope="module")
def bundle(tiny_dir: Path):
    from speechkit.models.pretrained import load_whisper

    return load_whisper(str(tiny_dir))


@pytest.fixture(autouse=True)
def load_once(bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every task gets a fresh copy of the model but shares the (slow to load, read-only) tokenizer."""
    from speechkit.models.ctranslate2 import WhisperBundle

    def load(name: str, cache: bool = True) -> WhisperBundle:
        return WhisperBundle(copy.deepcopy(bundle.model), bundle.tokenizer, bundle.feature_extractor,
                             copy.deepcopy(bundle.generation_config))

    monkeypatch.setattr("speechkit.models.whisper_seq2seq.load_whisper", load)


def make_batch(task: WhisperDistill, seed: int = 0) -> SpeechBatch:
    """Two random 0.4-0.6 s log-mel inputs with short transcripts, tokenized by the task."""
    g = torch.Generator().manual_seed(seed)
    texts = ["tone zero", "one"]
    ids = [task.tokenize(t) for t in texts]
    tokens = torch.full((2, max(map(len, ids))), task.pad_token_id)
    for row, seq in enumerate(ids):
        tokens[row, : len(seq)] = torch.tensor(seq)
    lens = torch.tensor([60, 40])
    return SpeechBatch(inputs=torch.randn(2, 60, 80, generator=g), input_lens=lens, texts=texts,
                       cut_ids=["a", "b"], durations=lens / 100, tokens=tokens,
                       token_lens=torch.tensor([len(s) for s in ids]))


def test_student_from_index_list_has_fewer_layers_and_maps_to_teacher(tiny_dir: Path) -> None:
    task = WhisperDistill(str(tiny_dir), remove_decoder_layers=[0], max_new_tokens=3)
    assert len(task.model.model.decoder.layers) == 1 and task.model.config.decoder_layers == 1
    assert len(task.teacher.model.model.decoder.layers) == 2 and len(task.model.model.encoder.layers) == 2
    assert task.layer_map("model.decoder.layers") == [0, 2]  # the kept layer 1 is compared with teacher layer 1
    assert task.layer_map("model.encoder.layers") == [0, 1, 2]
    batch = make_batch(task)
    losses = task.distill_losses(batch)
    assert set(losses) == {"ce", "kd", "loss"}
    assert torch.allclose(losses["loss"], losses["ce"] + losses["kd"])
    assert len(task.core.transcribe(batch)) == 2


def test_angular_distance_picks_the_block_and_ffn_width_shrinks(tiny_dir: Path) -> None:
    task = WhisperDistill(str(tiny_dir), remove_encoder_layers=1, decoder_ffn_keep=16, gamma=1.0)
    assert task.surgery is None  # data-dependent: waits for calibration batches
    with pytest.raises(SpeechkitError, match="calibration batches"):
        task.plan_surgery([])
    batches = [make_batch(task, 0), make_batch(task, 1)]
    plan = task.plan_surgery(batches)
    from speechkit.compress.prune import angular_distance_profile, best_block
    from speechkit.models.whisper_surgery import record_layers, stack_masks

    profiles = []
    for batch in batches:  # recompute the profile by hand from the teacher's encoder states
        feats, lens = task.core.features(batch)
        with record_layers(task.teacher.model, "model.encoder.layers") as states:
            task.teacher.logits(feats, lens, task.core.shift_labels(batch)[0])
        mask = stack_masks(batch, lens, feats.shape[-1])["model.encoder.layers"]
        profiles.append(angular_distance_profile(states, 1, mask, "all"))
    assert plan["remove"]["model.encoder.layers"] == [best_block(torch.stack(profiles).mean(0))]
    task.apply_surgery(plan)
    assert len(task.model.model.encoder.layers) == 1
    assert all(layer.fc1.out_features == 16 for layer in task.model.model.decoder.layers)
    assert task.model.config.decoder_ffn_dim == 16
    losses = task.distill_losses(batches[0])
    assert losses["squarehead"] > 0 and torch.isfinite(losses["loss"])


def test_kd_loss_decreases_on_a_tiny_batch(tiny_dir: Path) -> None:
    torch.manual_seed(0)
    task = WhisperDistill(str(tiny_dir), remove_decoder_layers=[1], alpha=0.0, beta=1.0, temperature=2.0)
    batch = make_batch(task)
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=3e-3)
    history = []
    for _ in range(6):
        loss = task.distill_losses(batch)["kd"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.7 * history[0], history
    assert all(p.grad is None for p in task.teacher.model.parameters())


def test_checkpoint_round_trip_rebuilds_the_student(tiny_dir: Path, tmp_path: Path) -> None:
    task = WhisperDistill(str(tiny_dir), remove_decoder_layers=1)
    task.apply_surgery(task.plan_surgery([make_batch(task)]))
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("teacher") or "_teacher" in k for k in checkpoint["state_dict"])
    fresh = WhisperDistill(str(tiny_dir), remove_decoder_layers=1)
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    batch = make_batch(task)
    task.eval(), fresh.eval()
    assert torch.equal(task(batch), fresh(batch))


@pytest.mark.parametrize("kwargs, message", [
    ({"remove_decoder_layers": 2}, "remove_decoder_layers=2"),
    ({"remove_encoder_layers": [0, 1], "decoder_ffn_keep": 16}, "remove_encoder_layers"),
    ({"alpha": 0.0, "beta": 0.0}, "alpha, beta, gamma"),
    ({"temperature": 0.0}, "temperature"),
    ({"language": "de"}, "language 'de': .* is an English-only Whisper"),  # issue 11, defect 9
])
def test_bad_settings_name_the_argument(tiny_dir: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(SpeechkitError, match=message):
        WhisperDistill(str(tiny_dir), **kwargs)


def test_heads_keep_equals_the_teacher_with_the_dropped_heads_zeroed(tiny_dir: Path, tmp_path: Path) -> None:
    task = WhisperDistill(str(tiny_dir), decoder_heads_keep=1, gamma=1.0, max_new_tokens=3)
    batches = [make_batch(task, 0), make_batch(task, 1)]
    plan = task.plan_surgery(batches)
    names = [f"model.decoder.layers.{i}.{a}" for i in range(2) for a in ("self_attn", "encoder_attn")]
    assert sorted(plan["heads"]) == sorted(names) and all(len(v) == 1 for v in plan["heads"].values())
    task.apply_surgery(plan)
    reference = copy.deepcopy(task.teacher.model)  # the teacher with every dropped head's out_proj columns set to 0
    with torch.no_grad():
        for name, kept in plan["heads"].items():
            out = reference.get_submodule(f"{name}.out_proj")
            dropped = 1 - kept[0]
            out.weight[:, dropped * 16:(dropped + 1) * 16] = 0  # tiny: 2 heads of width 16
    for name in names:
        attn = task.model.get_submodule(name)
        assert attn.num_heads == 1 and attn.q_proj.out_features == 16 and attn.out_proj.in_features == 16
    feats, lens = task.core.features(batches[0])
    inputs = task.core.shift_labels(batches[0])[0]
    expected = task.core.with_model(reference).logits(feats, lens, inputs)
    assert torch.allclose(task.core.logits(feats, lens, inputs), expected, atol=1e-5)
    assert len(task.core.transcribe(batches[0])) == 2  # cached decoding runs with the narrower attention
    assert task.distill_losses(batches[0])["squarehead"] > 0
    checkpoint = {"state_dict": task.state_dict()}
    task.on_save_checkpoint(checkpoint)
    fresh = WhisperDistill(str(tiny_dir), decoder_heads_keep=1)
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"], strict=True)
    task.eval(), fresh.eval()
    assert torch.equal(task(batches[1]), fresh(batches[1]))


def test_student_init_starts_a_sparse_student_beside_a_dense_teacher(tiny_dir: Path, bundle, tmp_path: Path) -> None:
    import shutil

    from speechkit.compress.prune import magnitude_prune

    folder = tmp_path / "pruned"
    shutil.copytree(tiny_dir, folder)
    pruned = copy.deepcopy(bundle.model)
    with torch.no_grad():
        for layer in pruned.model.decoder.layers:
            layer.fc1.weight.copy_(magnitude_prune(layer.fc1.weight, 0.5))
    pruned.save_pretrained(folder)
    task = WhisperDistill(str(tiny_dir), student_init=str(folder), gamma=1.0)
    for student, teacher in zip(task.model.model.decoder.layers, task.teacher.model.model.decoder.layers):
        assert (student.fc1.weight == 0).float().mean().item() == 0.5
        assert (teacher.fc1.weight == 0).float().mean().item() == 0.0
    assert task.distill_losses(make_batch(task))["squarehead"] > 0  # the student no longer equals its teacher

    narrow = WhisperDistill(str(tiny_dir), decoder_ffn_keep=16)
    narrow.apply_surgery(narrow.plan_surgery([make_batch(narrow)]))
    narrow.model.save_pretrained(folder)
    with pytest.raises(SpeechkitError, match="student_init"):
        WhisperDistill(str(tiny_dir), student_init=str(folder))


def test_the_student_takes_what_whisper_takes(tiny_dir: Path) -> None:
    """The data module's checks before training read these (shared with WhisperFinetune)."""
    task = WhisperDistill(str(tiny_dir), remove_decoder_layers=[1])
    assert task.max_input_seconds == 30.0 and task.expected_language == "en"


def test_bad_heads_keep_is_named(tiny_dir: Path) -> None:
    with pytest.raises(SpeechkitError, match="decoder_heads_keep=3"):
        WhisperDistill(str(tiny_dir), decoder_heads_keep=3)
