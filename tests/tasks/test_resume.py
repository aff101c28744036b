"""A run interrupted mid-epoch and resumed from its checkpoint reproduces the uninterrupted run exactly."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from speechkit.data import DataConfig, SpeechDataModule
from speechkit.tasks.classify import AudioClassifier
from speechkit.testing import tone_corpus


def run(corpus, root, max_steps, ckpt_path=None, save_every=None):
    L.seed_everything(0)
    model = AudioClassifier(labels=["tone0", "tone1"], num_mel_bins=40, hidden=16, num_layers=1)
    data = SpeechDataModule(DataConfig(train_cuts=str(corpus / "cuts_train.jsonl.gz"), input="fbank",
                                       num_mel_bins=40, max_duration=3.0, num_buckets=2, seed=3))
    callbacks = [ModelCheckpoint(dirpath=root, every_n_train_steps=save_every, save_top_k=-1)] if save_every else []
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, use_distributed_sampler=False,
                        limit_val_batches=0, callbacks=callbacks, enable_checkpointing=bool(save_every),
                        default_root_dir=root)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return model


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tmp_path):
    corpus = tmp_path / "corpus"
    tone_corpus(corpus, "train", num_cuts=40, seed=5)  # ~8 batches an epoch: step 5 is mid-epoch, 12 the next one
    full = run(corpus, tmp_path / "full", max_steps=12)
    run(corpus, tmp_path / "part", max_steps=5, save_every=5)
    checkpoint = next((tmp_path / "part").glob("*step=5.ckpt"))
    resumed = run(corpus, tmp_path / "resumed", max_steps=12, ckpt_path=str(checkpoint))
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
