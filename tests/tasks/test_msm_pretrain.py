"""MaskedSpeechPretrain + MaskedSpeechDataModule: the loss falls, masks follow the cuts' confidences, utterance
weighting reads them, missing confidences are a clear error, checkpoints load with weights_only.

Paper: *Ask2Mask: Guided Data Selection for Masked Speech Modeling* (speech.md section 3).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lhotse import CutSet
from lhotse.features.io import NumpyFilesWriter

from speechkit.checkpoints import load_task
from speechkit.data import DataConfig
from speechkit.data.masked import MaskedSpeechDataModule
from speechkit.drivers.codebook import msm_codebook
from speechkit.errors import SpeechkitError
from speechkit.models.speech_encoder import EncoderConfig
from speechkit.tasks.msm_pretrain import MaskedSpeechPretrain
from speechkit.testing import tone_corpus

TINY = EncoderConfig(num_mel_bins=40, dim=32, num_layers=2, num_heads=2, ffn_dim=64, conv_kernel=7, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Tones of 0.8-1.6 s (20-40 encoder frames), a codebook of 8 codes, and a copy of the training cuts whose
    confidence is 1 on the first 60 % of every cut and 0.1 after (so the median is 1)."""
    out = tmp_path_factory.mktemp("msm")
    cuts = tone_corpus(out, "train", num_cuts=24, num_classes=3, seed=1, min_duration=0.8, max_duration=1.6)
    tone_corpus(out, "dev", num_cuts=6, num_classes=3, seed=2, min_duration=0.8, max_duration=1.6)
    msm_codebook(str(out / "cuts_train.jsonl.gz"), str(out / "codebook.pt"), num_codes=8, num_mel_bins=40,
                 max_frames=2000)
    scored = []
    with NumpyFilesWriter(str(out / "confidence")) as writer:
        for cut in cuts:
            frames = int(np.ceil(cut.duration / 0.04))
            values = np.where(np.arange(frames) < 0.6 * frames, 1.0, 0.1).astype(np.float32)
            array = writer.store_array(cut.id, values, frame_shift=0.04, temporal_dim=0)
            scored.append(cut.with_custom("confidence", array))
    CutSet.from_cuts(scored).to_file(out / "cuts_scored.jsonl.gz")
    return out


def task(corpus: Path, **kwargs) -> MaskedSpeechPretrain:
    torch.manual_seed(0)
    return MaskedSpeechPretrain(str(corpus / "codebook.pt"), TINY, **{"mask_prob": 0.1, "mask_span": 3, **kwargs})


def batches(corpus: Path, model: MaskedSpeechPretrain, train: str = "cuts_train.jsonl.gz") -> list:
    data = MaskedSpeechDataModule(DataConfig(train_cuts=str(corpus / train), input="fbank", num_mel_bins=40,
                                             max_duration=8.0, num_buckets=2, seed=0))
    data.masking = model.masking
    return list(data.train_dataloader())


def train_losses(model: MaskedSpeechPretrain, train: list, steps: int) -> list[float]:
    """The training loss of ``steps`` AdamW steps (lr 3e-3) cycling over ``train``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(steps):
        loss = model.training_step(train[step % len(train)], step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def test_pretraining_loss_falls(corpus):
    model = task(corpus)
    train = batches(corpus, model)
    losses = train_losses(model, train, steps=40)
    assert losses[0] == pytest.approx(np.log(8), abs=0.5)  # 8 codes, untrained
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_ask2mask_masks_start_on_the_confident_frames(corpus):
    model = task(corpus, masking="ask2mask")
    for batch in batches(corpus, model, "cuts_scored.jsonl.gz"):
        mask = batch.mask
        starts = mask & ~torch.cat([torch.zeros(len(mask), 1, dtype=torch.bool), mask[:, :-1]], dim=1)
        frames = model.masking.encoder_frames(batch.speech.input_lens)
        for row in range(len(mask)):
            positions = torch.nonzero(starts[row]).flatten()
            assert len(positions) > 0 and int(positions.max()) <= 0.6 * int(frames[row]) + 1
            assert not mask[row, int(frames[row]):].any()  # never on padding


def test_utterance_weighting_reads_the_mean_confidence(corpus):
    model = task(corpus, utterance_weighting=True)
    batch = batches(corpus, model, "cuts_scored.jsonl.gz")[0]
    assert torch.all((batch.utterance_confidence > 0.6) & (batch.utterance_confidence < 0.7))  # ~ 0.6 + 0.4 * 0.1
    losses, masked, _ = model.frame_losses(batch)
    weighted = model.training_step(batch, 0)
    plain = losses[masked].mean()
    expected = (batch.utterance_confidence[:, None] * losses * masked).sum() / masked.sum()
    assert weighted.item() == pytest.approx(expected.item(), rel=1e-5)
    assert weighted.item() < plain.item()


def test_random_masking_needs_no_confidences_and_validation_masks_are_fixed(corpus):
    model = task(corpus, masking="ask2mask")
    data = MaskedSpeechDataModule(DataConfig(dev_cuts=str(corpus / "cuts_dev.jsonl.gz"), input="fbank",
                                             num_mel_bins=40))
    data.masking = model.masking
    first, second = next(iter(data.val_dataloader())), next(iter(data.val_dataloader()))
    assert torch.equal(first.mask, second.mask) and first.mask.any()  # random spans, no confidences on dev
    assert torch.all(first.utterance_confidence == 1)


def test_missing_confidences_are_a_clear_error(corpus):
    model = task(corpus, masking="ask2mask")
    with pytest.raises(SpeechkitError, match=r"^cut '.*': no 'confidence' field.*speechkit scorer-confidences"):
        batches(corpus, model)
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                        limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False)
    data = MaskedSpeechDataModule(DataConfig(train_cuts=str(corpus / "cuts_train.jsonl.gz"), input="fbank",
                                             num_mel_bins=40))
    with pytest.raises(SpeechkitError, match=r"train_cuts: 24 cuts have no 'confidence' field"):
        trainer.fit(model, data)


def test_bad_masking_options_are_errors(corpus):
    with pytest.raises(SpeechkitError, match="mask_prob"):
        task(corpus, mask_prob=1.2)
    with pytest.raises(SpeechkitError, match="codebook"):
        MaskedSpeechPretrain(str(corpus / "cuts_train.jsonl.gz"), TINY)
    with pytest.raises(SpeechkitError, match="fitted on 40 mel bins"):
        MaskedSpeechPretrain(str(corpus / "codebook.pt"), EncoderConfig(num_mel_bins=80, dim=32, num_heads=2))


def test_fit_and_checkpoint_round_trip(corpus, tmp_path):
    model = task(corpus, masking="ask2mask", utterance_weighting=True)
    data = MaskedSpeechDataModule(DataConfig(
        train_cuts=str(corpus / "cuts_scored.jsonl.gz"), dev_cuts=str(corpus / "cuts_dev.jsonl.gz"), input="fbank",
        num_mel_bins=40, max_duration=8.0, num_buckets=2))
    trainer = L.Trainer(max_steps=3, val_check_interval=3, check_val_every_n_epoch=None, logger=False,
                        enable_checkpointing=False, use_distributed_sampler=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(model, data)
    assert {"train_loss", "val_loss", "masked_fraction"} <= set(trainer.callback_metrics)
    trainer.save_checkpoint(tmp_path / "msm.ckpt")
    loaded = load_task(tmp_path / "msm.ckpt")
    assert isinstance(loaded, MaskedSpeechPretrain) and loaded.hparams.masking == "ask2mask"
    torch.testing.assert_close(loaded.encoder.state_dict(), model.encoder.state_dict())


def test_contrastive_objective_loss_falls(corpus):
    model = task(corpus, objective="contrastive", num_distractors=10)
    train = batches(corpus, model)
    losses = train_losses(model, train, steps=30)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    with pytest.raises(SpeechkitError, match="objective"):
        task(corpus, objective="bert")


def test_cuts_shorter_than_a_span_stay_unmasked_and_are_counted(corpus, caplog):
    from speechkit.data.masked import check_masked_cuts

    model = task(corpus, mask_span=30)  # 30 encoder frames = 1.2 s: part of the 0.8-1.6 s tones are shorter
    with caplog.at_level("WARNING"):
        short = check_masked_cuts(str(corpus / "cuts_train.jsonl.gz"), "train_cuts", model.masking)
    assert 0 < short < 24 and f"{short} of 24 cuts are shorter than one mask span" in caplog.text
    unmasked = 0
    for batch in batches(corpus, model):
        frames = model.masking.encoder_frames(batch.speech.input_lens)
        for row in range(len(batch)):
            if int(frames[row]) < 30:
                assert not batch.mask[row].any()
                unmasked += 1
    assert unmasked == short
