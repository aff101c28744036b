"""DualEncoderRetrieval: its loss is the symmetric InfoNCE of the batch's cosine similarities (equal captions are
positives), a tiny model learns to match three tone kinds with their captions, dev retrieval is logged, the
checkpoint round-trips and its losses fit the captioner's retrieval table."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lhotse import CutSet
from torch.nn import functional as F

from speechkit.checkpoints import load_task
from speechkit.data import DataConfig
from speechkit.data.captions import CaptionDataModule, caption_pairs
from speechkit.models.dual_encoder import TextEncoderConfig
from speechkit.models.speech_encoder import EncoderConfig
from speechkit.tasks.caption_retrieval import cut_features
from speechkit.tasks.dual_encoder_retrieval import (
    DualEncoderRetrieval,
    caption_labels,
    dual_encoder_losses,
    dual_encoder_retrieval,
)
from speechkit.testing import TONE_CAPTIONS, captioned_tones
from speechkit.text.words import build_vocabulary

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

ENCODER = EncoderConfig(num_mel_bins=40, dim=32, num_layers=1, num_heads=2, ffn_dim=64, conv_kernel=7, dropout=0.0)
TEXT = TextEncoderConfig(dim=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.0, max_tokens=12)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dual")
    captioned_tones(out, "train", 12, seed=0)
    captioned_tones(out, "dev", 6, seed=1)
    return out


def data_config(corpus: Path, **kwargs) -> DataConfig:
    return DataConfig(train_cuts=str(corpus / "cuts_train.jsonl.gz"), dev_cuts=str(corpus / "cuts_dev.jsonl.gz"),
                      input="fbank", num_mel_bins=40, max_duration=12.0, num_buckets=2, val_batch_size=6, **kwargs)


def task(**kwargs) -> DualEncoderRetrieval:
    torch.manual_seed(0)
    words = build_vocabulary(c for captions in TONE_CAPTIONS.values() for c in captions)
    return DualEncoderRetrieval(words, encoder=ENCODER, text=TEXT, embed_dim=16,
                                optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3), **kwargs)


def test_loss_is_symmetric_infonce_and_equal_captions_are_positives(corpus):
    model = task(temperature=0.5)
    module = CaptionDataModule(data_config(corpus))
    module.tokenizer, module.pad_token_id = model.tokenize, model.pad_token_id
    batch = module.dataset(train=False)[CutSet.from_file(corpus / "cuts_train.jsonl.gz").subset(first=5)]
    assert len(set(batch.speech.texts)) == 5
    speech = batch.speech
    a = F.normalize(model.model.embed_audio(speech.inputs, speech.input_lens), dim=-1)
    t = F.normalize(model.model.embed_text(speech.tokens, speech.token_lens), dim=-1)
    logits = a @ t.T / 0.5
    target = torch.arange(5)
    by_hand = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    assert model.loss(batch).item() == pytest.approx(by_hand.item(), abs=1e-5)
    assert caption_labels(["A dog.", "a cat", "a dog", "a cat!"]).tolist() == [0, 1, 0, 1]


def test_a_tiny_dual_encoder_matches_tone_kinds_with_their_captions(corpus, tmp_path):
    model = task()
    fit = L.Trainer(max_steps=60, logger=False, enable_checkpointing=False, use_distributed_sampler=False,
                    enable_progress_bar=False, enable_model_summary=False, check_val_every_n_epoch=None,
                    val_check_interval=60)
    fit.fit(model, CaptionDataModule(data_config(corpus, max_cuts=6)))
    metrics = fit.callback_metrics
    assert {"val_t2a_R1", "val_a2t_R1", "val_t2a_mAP10", "val_a2t_mAP10"} <= set(metrics)
    cuts = CutSet.from_file(corpus / "cuts_dev.jsonl.gz")
    _, captions, owner = caption_pairs(cuts)
    _, feats = cut_features(cuts, data_config(corpus))
    loss = dual_encoder_losses(model, feats, captions)
    kinds = [a % 3 for a in range(6)]  # captioned_tones: kind = index % 3
    best = loss.argmin(1)
    assert all(kinds[owner[int(c)]] == kinds[a] for a, c in enumerate(best))  # every audio's best caption: its kind
    # two dev clips of each kind share their five caption texts, so only the kind is identifiable: worst case the
    # five own captions come 6th-10th, AP = (1/6 + 2/7 + 3/8 + 4/9 + 5/10) / 5 = 0.354
    assert float(metrics["val_a2t_mAP10"]) >= 0.35
    fit.save_checkpoint(tmp_path / "dual.ckpt")
    loaded = load_task(tmp_path / "dual.ckpt")
    assert isinstance(loaded, DualEncoderRetrieval)
    again, table = dual_encoder_retrieval(loaded, cuts, data_config(corpus))
    assert torch.allclose(again, loss, atol=1e-5)
    assert set(table) == {"t2a raw", "t2a normalised", "a2t raw", "a2t normalised"}
    assert table["a2t raw"]["R@1"] == pytest.approx(float(metrics["val_a2t_R1"]))
