"""Evaluation loaders have a length (``speechkit validate`` / ``test`` show a total and the time left, not ``2/--``),
counted from the cuts' metadata only; training keeps its length-free dynamic sampler."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lhotse.dataset import SimpleCutSampler

from speechkit.data import DataConfig, SpeechDataModule
from speechkit.data.datamodule import CountedSampler
from speechkit.testing import tone_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_progress")
    tone_corpus(root, "train", num_cuts=4, seed=0)
    tone_corpus(root, "dev", num_cuts=5, seed=1)
    return root


def data(corpus, **overrides) -> SpeechDataModule:
    options = dict(train_cuts=str(corpus / "cuts_train.jsonl.gz"), dev_cuts=str(corpus / "cuts_dev.jsonl.gz"),
                   test_cuts=str(corpus / "cuts_dev.jsonl.gz"), input="fbank", max_duration=3.0, val_batch_size=2,
                   num_buckets=2)
    return SpeechDataModule(DataConfig(**(options | overrides)))


def test_an_eval_loader_has_the_length_it_yields_every_time(corpus):
    loader = data(corpus).val_dataloader()
    assert len(loader) == 3  # 5 cuts, 2 a batch
    first = [batch.cut_ids for batch in loader]
    assert len(first) == 3 and [batch.cut_ids for batch in loader] == first
    with pytest.raises(TypeError):
        len(data(corpus).train_dataloader())  # training stays a dynamic, length-free sampler


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_counts_its_own_share(corpus, rank):
    cuts = data(corpus)._cuts("dev")
    counted = CountedSampler(SimpleCutSampler(cuts, max_cuts=2, shuffle=False, rank=rank, world_size=2))
    assert len(counted) == len(list(counted)) == len(list(SimpleCutSampler(cuts, max_cuts=2, rank=rank, world_size=2)))


def test_counting_reads_no_audio(corpus, tmp_path):
    gone = tmp_path / "gone"
    tone_corpus(gone, "dev", num_cuts=3, seed=2)
    for wav in (gone / "audio").iterdir():
        wav.unlink()
    loader = data(corpus, dev_cuts=str(gone / "cuts_dev.jsonl.gz")).val_dataloader()
    assert len(loader) == 2
    with pytest.raises(Exception):
        next(iter(loader))  # a batch does load audio: the files are gone


class Counting(L.LightningModule):
    """Counts the batches it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.seen = 0

    def validation_step(self, batch, batch_idx):
        self.seen += 1

    def test_step(self, batch, batch_idx):
        self.seen += 1


def test_lightning_knows_the_totals_of_validate_and_test(corpus):
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                        use_distributed_sampler=False)
    module = Counting()
    trainer.validate(module, data(corpus))
    assert trainer.num_val_batches == [3] and module.seen == 3  # without a length: [inf]
    trainer.test(module, data(corpus))
    assert trainer.num_test_batches == [3] and module.seen == 6
