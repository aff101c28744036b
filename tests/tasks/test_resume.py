"""A run interrupted mid-epoch and resumed from its checkpoint reproduces the uninterrupted run exactly."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from speechkit.checkpoints import SignalCheckpoint, load_checkpoint
from speechkit.data import DataConfig, SpeechDataModule
from speechkit.tasks.classify import AudioClassifier
from speechkit.testing import tone_corpus


class LossLog(Callback):
    """The training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.epochs: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"] if isinstance(outputs, dict) else outputs))
        self.epochs.append(trainer.current_epoch)


class SigtermAt(Callback):
    """Sends this process SIGTERM after training step ``step``, as a scheduler would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def run(corpus, root, max_steps, ckpt_path=None, save_every=None, callbacks=(), **data_options):
    L.seed_everything(0)
    model = AudioClassifier(labels=["tone0", "tone1"], num_mel_bins=40, hidden=16, num_layers=1)
    data = SpeechDataModule(DataConfig(train_cuts=str(corpus / "cuts_train.jsonl.gz"), input="fbank",
                                       num_mel_bins=40, max_duration=3.0, num_buckets=2, seed=3, **data_options))
    losses = LossLog()
    callbacks = [losses, *callbacks]
    if save_every:
        callbacks.append(ModelCheckpoint(dirpath=root, every_n_train_steps=save_every, save_top_k=-1))
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, use_distributed_sampler=False,
                        limit_val_batches=0, callbacks=callbacks, enable_checkpointing=bool(save_every),
                        default_root_dir=root)
    trainer.fit(model, data, ckpt_path=ckpt_path)
    model.losses, model.epochs = losses.losses, losses.epochs
    return model


def assert_same_run(full, resumed, resumed_from: int) -> None:
    assert resumed.losses == full.losses[resumed_from:]
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tmp_path):
    corpus = tmp_path / "corpus"
    tone_corpus(corpus, "train", num_cuts=40, seed=5)  # ~8 batches an epoch: step 5 is mid-epoch, 12 the next one
    full = run(corpus, tmp_path / "full", max_steps=12)
    run(corpus, tmp_path / "part", max_steps=5, save_every=5)
    checkpoint = next((tmp_path / "part").glob("*step=5.ckpt"))
    resumed = run(corpus, tmp_path / "resumed", max_steps=12, ckpt_path=str(checkpoint))
    assert_same_run(full, resumed, 5)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_with_speed_perturbation_reproduces_the_uninterrupted_run(tmp_path, workers):
    """The augmentation's random draws after the resume point are those of the uninterrupted run (defect 12),
    with or without DataLoader workers."""
    corpus = tmp_path / "corpus"
    tone_corpus(corpus, "train", num_cuts=40, seed=5)
    augment = dict(speed_perturb=[0.9, 1.1], speed_perturb_prob=0.5, num_workers=workers)
    full = run(corpus, tmp_path / "full", max_steps=12, **augment)
    run(corpus, tmp_path / "part", max_steps=5, save_every=5, **augment)
    checkpoint = next((tmp_path / "part").glob("*step=5.ckpt"))
    resumed = run(corpus, tmp_path / "resumed", max_steps=12, ckpt_path=str(checkpoint), **augment)
    assert_same_run(full, resumed, 5)


@pytest.mark.parametrize("where", ["mid-epoch", "end-of-epoch"])
def test_sigterm_saves_a_last_checkpoint_that_resumes_exactly(tmp_path, where):
    """SIGTERM stops fitting at a batch boundary; SignalCheckpoint's last.ckpt resumes to the uninterrupted run."""
    corpus = tmp_path / "corpus"
    tone_corpus(corpus, "train", num_cuts=40, seed=5)
    augment = dict(speed_perturb=[0.9, 1.1], speed_perturb_prob=0.5)
    full = run(corpus, tmp_path / "full", max_steps=12, **augment)
    step = 5 if where == "mid-epoch" else full.epochs.count(0)
    with pytest.raises(SIGTERMException):
        run(corpus, tmp_path / "part", max_steps=12, callbacks=[SigtermAt(step), SignalCheckpoint()], **augment)
    last = tmp_path / "part" / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last)["global_step"] == step
    resumed = run(corpus, tmp_path / "resumed", max_steps=12, ckpt_path=str(last), **augment)
    assert_same_run(full, resumed, step)
