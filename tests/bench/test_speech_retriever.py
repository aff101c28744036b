"""The end-to-end speech retriever: the distillation loss by hand, a tiny student learns its teacher's space, the
checkpoint round trip, and its rows in the benchmark."""

import math

import numpy as np
import pytest
import torch

from speechkit.bench.asr import read_audio
from speechkit.bench.beir import RetrievalSet
from speechkit.bench.retrievers import DenseRetriever
from speechkit.bench.speech_retriever import (
    distillation_loss, embed_speech, fbank, load_speech_embedder, save_speech_embedder, train_speech_embedder,
)
from speechkit.bench.squtr import EspeakTTS, run_squtr
from speechkit.errors import SpeechkitError
from speechkit.models.speech_encoder import EncoderConfig

SENTENCES = ["a dog runs on the beach", "two women are cooking dinner", "a man rides a red bicycle",
             "children play football in the park", "an old car parked in the snow", "a cat sleeps on a sofa"]


def test_distillation_loss_by_hand():
    student = torch.eye(3)
    teacher = torch.eye(3)
    expected = -math.log(math.exp(1 / 0.05) / (math.exp(1 / 0.05) + 2))  # cosine term 0; InfoNCE of a perfect match
    assert float(distillation_loss(student, teacher)) == pytest.approx(expected, abs=1e-6)
    rotated = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    cosine = 1 - (student * rotated).sum(-1)  # 1, 1, 0
    logits = student @ rotated.T / 0.05
    by_hand = cosine.mean() - torch.log_softmax(logits, -1).diagonal().mean()
    assert float(distillation_loss(student, 3 * rotated)) == pytest.approx(float(by_hand), rel=1e-6)  # t normalized


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("e2e")
    tts = EspeakTTS(speakers=2)
    waveforms = [read_audio(tts.to_file(text, f"q{i}", folder)) for i, text in enumerate(SENTENCES)]
    dense = DenseRetriever()
    teacher = dense.embed(SENTENCES)
    config = EncoderConfig(dim=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.0)
    model, losses = train_speech_embedder([fbank(w) for w in waveforms], teacher, config, steps=150, batch_size=6,
                                          lr=3e-3, warmup_steps=10, progress=False)
    path = folder / "e2e.pt"
    save_speech_embedder(model, path, "dense")
    return model, losses, waveforms, dense, path


def test_the_student_learns_the_teachers_space(trained):
    model, losses, waveforms, dense, _ = trained
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    dense.index({f"d{i}": text for i, text in enumerate(SENTENCES)})
    run = dense.search_embeddings([f"q{i}" for i in range(6)], embed_speech(model, waveforms), k=1)
    assert sum(next(iter(run[f"q{i}"])) == f"d{i}" for i in range(6)) >= 5  # each utterance finds its sentence


def test_checkpoint_round_trip_and_refusal(trained, tmp_path):
    model, _, waveforms, _, path = trained
    loaded, text_model = load_speech_embedder(path)
    assert text_model == "dense"
    assert np.allclose(embed_speech(loaded, waveforms[:2]), embed_speech(model, waveforms[:2]), atol=1e-6)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(SpeechkitError, match="not a speech embedder"):
        load_speech_embedder(tmp_path / "other.pt")


def test_end_to_end_rows_in_the_benchmark(trained, tmp_path):
    _, _, _, dense, path = trained
    corpus = {f"d{i}": text for i, text in enumerate(SENTENCES)} | {"x1": "a bird flies over the sea"}
    data = RetrievalSet(corpus, {f"q{i}": text for i, text in enumerate(SENTENCES)},
                        {f"q{i}": {f"d{i}": 1} for i in range(6)})
    rows = run_squtr(data, [], [dense], ["clean", "10"], tmp_path / "cache", tts=EspeakTTS(speakers=2),
                     speech_retrievers=[str(path)], progress=False)
    e2e = {row["condition"]: row for row in rows if row["retriever"] == "e2e:e2e.pt"}
    assert set(e2e) == {"clean", "10"} and all(r["asr"] is None and r["wer"] is None for r in e2e.values())
    assert e2e["clean"]["ndcg@10"] > 0.6  # the utterances it was trained on (same voices, same text)
