"""Run by tests/data/test_ddp.py: a real 2-process CPU DDP fit that records the cuts each rank trained on."""

import json
import sys
from pathlib import Path

import lightning as L

from speechkit.data import DataConfig, SpeechDataModule
from speechkit.tasks.classify import AudioClassifier


class Recording(AudioClassifier):
    def on_fit_start(self) -> None:
        self.seen: list[list[str]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(list(batch.cut_ids))
        return super().training_step(batch, batch_idx)

    def on_train_end(self) -> None:
        out = Path(sys.argv[2]) / f"rank{self.global_rank}.json"
        out.write_text(json.dumps(self.seen))


if __name__ == "__main__":
    corpus = Path(sys.argv[1])
    model = Recording(labels=["tone0", "tone1"], num_mel_bins=40, hidden=16, num_layers=1)
    data = SpeechDataModule(DataConfig(train_cuts=str(corpus / "cuts_train.jsonl.gz"), input="fbank",
                                       num_mel_bins=40, max_duration=3.0, num_buckets=2))
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, use_distributed_sampler=False,
                        limit_val_batches=0)
    trainer.fit(model, data)
