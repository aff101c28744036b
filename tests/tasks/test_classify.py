"""AudioClassifier: every head learns the tone corpus, every switch trains, bad input is a clear error."""

from __future__ import annotations

import dataclasses

import lightning as L
import pytest
import torch

from speechkit.data import DataConfig, SpeechDataModule
from speechkit.errors import SpeechkitError
from speechkit.optim import WarmupStableDecay
from speechkit.tasks.classify import AudioClassifier
from speechkit.testing import tone_corpus

LABELS = ["tone0", "tone1", "tone2"]
TINY = dict(labels=LABELS, num_mel_bins=40, hidden=32, num_layers=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The machine is shared: one intra-op thread keeps these tiny models fast and the results reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("tones")
    tone_corpus(out, "train", num_cuts=36, num_classes=3, seed=1)
    tone_corpus(out, "dev", num_cuts=18, num_classes=3, seed=2)
    return out


@pytest.fixture(scope="module")
def data(corpus):
    return SpeechDataModule(DataConfig(
        train_cuts=str(corpus / "cuts_train.jsonl.gz"), dev_cuts=str(corpus / "cuts_dev.jsonl.gz"), input="fbank",
        num_mel_bins=40, max_duration=6.0, num_buckets=2, val_batch_size=18))


@pytest.fixture(scope="module")
def batches(data):
    """Training batches (one epoch, features computed once) and the whole dev set as one batch."""
    return list(data.train_dataloader()), next(iter(data.val_dataloader()))


def train(model: AudioClassifier, train_batches: list, steps: int, lr: float = 3e-3) -> list[float]:
    """Plain loop over the cached batches (the training loss of each step, as ``training_step`` computes it)."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        batch = train_batches[step % len(train_batches)]
        loss = model.training_loss(batch, model.targets(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def accuracy(model: AudioClassifier, batch) -> float:
    with torch.no_grad():
        return float((model(batch.inputs, batch.input_lens).argmax(-1) == model.targets(batch)).float().mean())


@pytest.mark.parametrize("head,distance", [("linear", "euclidean"), ("harmonic", "euclidean"),
                                           ("harmonic", "cosine"), ("harmonic", "bray_curtis_abs"),
                                           ("harmonic", "mahalanobis"), ("zloss", "euclidean")])
def test_every_head_learns_the_tones(batches, head, distance):
    """Three tones (300/600/900 Hz in noise), 40 steps of AdamW from 3 initialisations: the loss falls in each and
    the mean dev accuracy is at least 0.75 (chance 0.33).

    The margin was measured, not pinned to one machine's trajectory: over 3 tone corpora x 3 initialisations
    the lowest per-corpus mean was 0.76 (Z-loss; single runs 0.50-1.00), on this test's corpus 0.85. A single
    run at 0.9 failed on a fresh machine. The signed Bray-Curtis distance is at chance by construction and is
    tested as such in tests/losses/test_harmonic_learning.py.
    """
    train_batches, dev = batches
    accuracies = []
    for seed in range(3):
        torch.manual_seed(seed)
        model = AudioClassifier(**TINY, head=head, distance=distance)
        losses = train(model, train_batches, steps=40)
        assert sum(losses[-5:]) < sum(losses[:5]), f"seed {seed}: the loss did not fall"
        accuracies.append(accuracy(model, dev))
    assert sum(accuracies) / 3 >= 0.75, accuracies


@pytest.mark.parametrize("switches", [dict(reweighting="linupper"), dict(reweighting="extremes", head="zloss"),
                                      dict(reweighting="quadratic", head="harmonic"),
                                      dict(noisefit={"n_layers": 1, "noise_std": 0.1}),
                                      dict(noisefit=True, head="harmonic", num_layers=3)])
def test_every_switch_trains(batches, switches):
    """40 steps with each switch: the loss falls and dev accuracy is at least twice chance (67 %)."""
    train_batches, dev = batches
    torch.manual_seed(0)
    model = AudioClassifier(**{**TINY, **switches})
    losses = train(model, train_batches, steps=40)
    assert sum(losses[-5:]) < sum(losses[:5])
    assert accuracy(model, dev) >= 2 / 3
    if model.noisefit is not None:
        assert len(model.noisefit.selected) == model.noisefit.n_layers  # blocks picked by SNR on the first batch


def test_noisefit_loss_is_the_hybrid_loss(batches):
    """With alpha = 1 the hybrid loss is exactly the clean cross-entropy of the head."""
    batch = batches[0][0]
    torch.manual_seed(0)
    model = AudioClassifier(**TINY, noisefit={"alpha": 1.0, "lam": 0.0, "n_layers": 1})
    targets = model.targets(batch)
    expected = model.sample_losses(model(batch.inputs, batch.input_lens), targets).mean()
    torch.testing.assert_close(model.training_loss(batch, targets), expected)


def test_uniform_reweighting_is_the_plain_mean(batches):
    batch = batches[0][0]
    torch.manual_seed(0)
    plain = AudioClassifier(**TINY)
    uniform = AudioClassifier(**TINY, reweighting="uniform")
    uniform.load_state_dict(plain.state_dict())
    targets = plain.targets(batch)
    torch.testing.assert_close(uniform.training_loss(batch, targets), plain.training_loss(batch, targets))


def test_fit_with_a_scheduler_logs_accuracy_and_weight_norm(data, tmp_path):
    """The Lightning path: a WSD schedule stepped per step, validation accuracy and the head's weight norm logged."""
    L.seed_everything(0)
    model = AudioClassifier(**TINY, optimizer=lambda p: torch.optim.AdamW(p, lr=3e-3),
                            scheduler=lambda o: WarmupStableDecay(o, warmup_steps=2, total_steps=8))
    trainer = L.Trainer(accelerator="cpu", max_steps=8, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, data)
    assert trainer.global_step == 8
    assert {"val_acc", "train_loss", "head_weight_norm"} <= set(trainer.callback_metrics)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.0  # decayed to min_lr_ratio 0 at total_steps


def test_unknown_label_names_the_cut(batches):
    batch = batches[0][0]
    model = AudioClassifier(labels=["tone0", "tone1"], num_mel_bins=40, hidden=8, num_layers=1)
    bad = dataclasses.replace(batch, texts=["tone0"] * (len(batch) - 1) + ["tone7"])
    with pytest.raises(SpeechkitError, match=f"cut '{batch.cut_ids[-1]}'.*'tone7'"):
        model.targets(bad)


def test_custom_label_field(batches):
    batch = batches[0][0]
    model = AudioClassifier(labels=["0", "1", "2"], label_field="label", num_mel_bins=40, hidden=8, num_layers=1)
    expected = [int(text[-1]) for text in batch.texts]  # tone_corpus: text "tone<k>", custom["label"] = k
    assert model.targets(batch).tolist() == expected


def test_non_finite_loss_names_the_step(batches):
    batch = batches[0][0]
    model = AudioClassifier(**TINY)
    nan = dataclasses.replace(batch, inputs=torch.full_like(batch.inputs, float("nan")))
    with pytest.raises(SpeechkitError, match="train_loss: became nan at step 0"):
        model.training_step(nan, 0)


@pytest.mark.parametrize("kwargs,argument", [
    (dict(head="softmax"), "head"), (dict(head="harmonic", distance="euclidian"), "distance"),
    (dict(head="harmonic", harmonic_n=0.0), "n"), (dict(reweighting="lin_upper"), "strategy"),
    (dict(noisefit={"noise_sdt": 0.1}), "noisefit"), (dict(head="zloss", noisefit=True), "noisefit"),
    (dict(reweighting="linupper", noisefit={"n_layers": 1}), "noisefit, reweighting"),
    (dict(labels=["a", "a"]), "labels"),
    (dict(head="zloss", zloss_b=0.0), "b"), (dict(noisefit={"n_layers": 3}), "noisefit"),
    (dict(head="harmonic", harmonic_options={"metric_init_scal": 1.0}), "harmonic_options"),
    (dict(head="linear", harmonic_options={"p": 3.0}), "harmonic_options"),
])
def test_bad_settings_are_clear_errors(kwargs, argument):
    with pytest.raises(SpeechkitError, match=f"^{argument}:"):
        AudioClassifier(**{**TINY, **kwargs})


def test_harmonic_options_reach_the_head():
    model = AudioClassifier(**{**TINY, "head": "harmonic", "distance": "mahalanobis_cholesky",
                               "harmonic_options": {"metric_init_scale": 0.5, "mahalanobis_lambda": 0.1}})
    assert model.head.metric_init_scale == 0.5 and model.head.mahalanobis_lambda == 0.1
    assert torch.allclose(model.head.metric_matrix(), 0.25 * torch.eye(model.head.dim), atol=1e-6)
