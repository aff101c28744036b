"""Corpora -> Lhotse CutSets -> buckets -> typed batches."""

from speechkit.data.batches import SpeechBatch
from speechkit.data.config import DataConfig
from speechkit.data.datamodule import SpeechDataModule, load_cuts
from speechkit.data.dataset import SpeechDataset

__all__ = ["DataConfig", "SpeechBatch", "SpeechDataModule", "SpeechDataset", "load_cuts"]
