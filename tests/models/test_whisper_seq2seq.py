"""The Whisper sequence-to-sequence core on a tiny random Whisper: tokens and labels, encoder input, weights from a
task checkpoint, predictions files, what an export can rebuild."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from speechkit.compress.prune import prune_heads, slice_mlp
from speechkit.data.batches import SpeechBatch
from speechkit.errors import SpeechkitError
from speechkit.models.whisper_seq2seq import (
    WHISPER_FRAMES,
    WhisperSeq2Seq,
    check_exportable,
    metric_language,
    predictions_path,
    write_predictions,
)
from speechkit.tensors import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from speechkit.testing import tiny_whisper_dir

    root = tmp_path_factory.mktemp("seq2seq")
    return {"en": tiny_whisper_dir(root / "en", multilingual=False), "multi": tiny_whisper_dir(root / "multi")}


def batch_of(core: WhisperSeq2Seq, texts: list[str], frames: list[int], seed: int = 0) -> SpeechBatch:
    """Random log-mel inputs ``(B, T, 80)`` of the given lengths, tokenized by the core, padded with its pad id."""
    g = torch.Generator().manual_seed(seed)
    ids = [core.tokenize(text) for text in texts]
    tokens = torch.full((len(texts), max(map(len, ids))), core.pad_token_id)
    for row, seq in enumerate(ids):
        tokens[row, : len(seq)] = torch.tensor(seq)
    lens = torch.tensor(frames)
    inputs = torch.randn(len(texts), max(frames), 80, generator=g)
    return SpeechBatch(inputs=inputs, input_lens=lens, texts=texts, cut_ids=[f"cut{i}" for i in range(len(texts))],
                       durations=lens / 100, tokens=tokens, token_lens=torch.tensor([len(s) for s in ids]))


def test_tokens_are_prompt_text_and_end_and_labels_mask_prompt_and_padding(tiny_dirs):
    core = WhisperSeq2Seq.load(str(tiny_dirs["multi"]), language="de")
    tok = core.tokenizer.convert_tokens_to_ids
    assert core.prompt == [tok("<|startoftranscript|>"), tok("<|de|>"), tok("<|transcribe|>"), tok("<|notimestamps|>")]
    text_ids = core.tokenizer.encode(" guten tag", add_special_tokens=False)
    assert core.tokenize("  guten tag ") == core.prompt + text_ids + [core.eot]
    batch = batch_of(core, ["guten tag", "ja"], [50, 30])
    inputs, labels = core.shift_labels(batch)
    assert torch.equal(inputs, batch.tokens[:, :-1])
    for row, length in enumerate(batch.token_lens.tolist()):
        kept = [i for i in range(labels.shape[1]) if labels[row, i] != IGNORE_INDEX]
        assert kept == list(range(len(core.prompt) - 1, length - 1))  # text tokens and <|endoftext|>, nothing else
        assert torch.equal(labels[row, kept], batch.tokens[row, [i + 1 for i in kept]])


def test_encoder_input_is_padded_to_30_s_with_each_utterances_silence_or_left_as_is(tiny_dirs):
    padded = WhisperSeq2Seq.load(str(tiny_dirs["en"]), pad_to_30s=True)
    batch = batch_of(padded, ["one", "two"], [60, 40])
    feats, lens = padded.features(batch)
    assert feats.shape == (2, 80, WHISPER_FRAMES) and torch.equal(lens, batch.input_lens)
    for row, n in enumerate([60, 40]):
        silence = batch.inputs[row, :n].max() - 2.0
        assert torch.equal(feats[row, :, 60:], torch.full((80, WHISPER_FRAMES - 60), silence.item()))
    variable = dataclasses.replace(padded, pad_to_30s=False)
    assert variable.features(batch)[0].shape == (2, 80, 60)
    assert variable.padding_fraction(batch).item() == pytest.approx(1 - 100 / 120)
    assert padded.padding_fraction(batch).item() == pytest.approx(1 - 100 / (2 * WHISPER_FRAMES))
    long = batch_of(padded, ["one"], [WHISPER_FRAMES + 1])
    with pytest.raises(SpeechkitError, match=r"^cut 'cut0' is longer than 30 s"):
        padded.features(long)


def test_a_second_core_shares_the_text_side_around_another_model(tiny_dirs):
    import copy

    student = WhisperSeq2Seq.load(str(tiny_dirs["en"]), max_new_tokens=3)
    teacher = student.with_model(copy.deepcopy(student.model).eval())
    assert teacher.model is not student.model and teacher.tokenizer is student.tokenizer
    assert teacher.prompt == student.prompt and teacher.max_new_tokens == 3
    batch = batch_of(student, ["one", "two"], [60, 40])
    student.model.eval()
    assert torch.equal(student.loss(batch), teacher.loss(batch))
    assert student.transcribe(batch) == teacher.transcribe(batch)


def test_weights_from_a_task_checkpoint_must_fit(tiny_dirs, tmp_path):
    source = WhisperSeq2Seq.load(str(tiny_dirs["en"]))
    target = WhisperSeq2Seq.load(str(tiny_dirs["en"]))
    with torch.no_grad():
        source.model.proj_out.weight.add_(1.0)  # tied to the token embeddings: both change
    state = {f"model.{k}": v for k, v in source.model.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "task.ckpt")
    target.load_task_weights(str(tmp_path / "task.ckpt"))
    assert torch.equal(target.model.proj_out.weight, source.model.proj_out.weight)

    torch.save({"state_dict": {**state, "head.weight": torch.zeros(2)}}, tmp_path / "extra.ckpt")
    with pytest.raises(SpeechkitError, match=r"extra.ckpt: weights do not fit .*unexpected \['head.weight'\]"):
        target.load_task_weights(str(tmp_path / "extra.ckpt"))
    narrow = dict(state)
    narrow["model.model.decoder.layers.0.fc1.weight"] = torch.zeros(16, 32)
    torch.save({"state_dict": narrow}, tmp_path / "narrow.ckpt")
    with pytest.raises(SpeechkitError, match=r"narrow.ckpt: weights do not fit this model \(.*fc1") as error:
        target.load_task_weights(str(tmp_path / "narrow.ckpt"))
    assert "\n" not in str(error.value)


def test_normalizer_language_and_predictions_path():
    assert [metric_language(x) for x in ("en", None, "de", "ky")] == ["en", "en", "de", "mul"]
    one = SimpleNamespace(log_dir="/runs/v0", world_size=1, global_rank=0)
    assert predictions_path(None, one) == Path("/runs/v0/predictions.jsonl")
    two = SimpleNamespace(log_dir="/runs/v0", world_size=2, global_rank=1)
    assert predictions_path("/out/p.jsonl", two) == Path("/out/p.rank1.jsonl")


def test_predictions_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "out" / "predictions.jsonl"
    rows = [{"id": "a", "ref": "zwei", "hyp": "zwei"}, {"id": "b", "ref": "ñ", "hyp": ""}]
    assert write_predictions(rows, path) == path
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == rows
    calls, original = [], json.dumps

    def dumps(row, **kwargs):
        calls.append(row)
        if len(calls) == 2:
            raise OSError("disk full")
        return original(row, **kwargs)

    monkeypatch.setattr("speechkit.models.whisper_seq2seq.json.dumps", dumps)
    with pytest.raises(OSError, match="disk full"):
        write_predictions([{"id": "c", "ref": "", "hyp": ""}] * 3, path)
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == rows  # unchanged
    assert sorted(p.name for p in path.parent.iterdir()) == ["predictions.jsonl"]  # no temporary file left


def test_an_export_refuses_attention_a_hugging_face_config_cannot_rebuild(tiny_dirs):
    core = WhisperSeq2Seq.load(str(tiny_dirs["en"]))
    model = core.model
    slice_mlp(model, "model.decoder.layers.0.fc1", "model.decoder.layers.0.fc2", torch.arange(16))
    with pytest.raises(SpeechkitError, match=r"fc1.weight is \(16, 32\) but .* has \(64, 32\)"):
        check_exportable(model)  # the config still says decoder_ffn_dim = 64
    slice_mlp(model, "model.decoder.layers.1.fc1", "model.decoder.layers.1.fc2", torch.arange(16))
    model.config.decoder_ffn_dim = 16
    check_exportable(model)  # narrower MLPs everywhere: the config expresses it
    name = "model.decoder.layers.0.self_attn"
    prune_heads(model, [f"{name}.{p}_proj" for p in "qkv"], f"{name}.out_proj", 2, torch.tensor([1.0, 0.0]), 1,
                attention=name)
    with pytest.raises(SpeechkitError, match=r"^export: model.decoder.layers.0.self_attn.k_proj.weight is \(16, 32\)"
                                             r".*attention heads pruned") as error:
        check_exportable(model)
    assert "\n" not in str(error.value)
