"""``TextPairDataModule``: aligned source / target text files (plain or ``.gz``, one sentence a line) -> batches of
sentence pairs, for text translation (e.g. Multi30k's ``train.en.gz`` / ``train.de.gz``). No audio is read.

Dimension legend: ``B`` sentence pairs.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader, IterableDataset

from speechkit.errors import SpeechkitError


@dataclass
class TextPairBatch:
    """``B`` sentence pairs: ``sources``, ``targets`` and ``ids`` (``<source file name>:<line>``, 1-based)."""

    sources: list[str]
    targets: list[str]
    ids: list[str]

    def __len__(self) -> int:
        return len(self.ids)


def read_lines(path: str | Path) -> list[str]:
    """Lines of a text file (``.gz`` read compressed; a UTF-8 byte order mark dropped)."""
    path = Path(path)
    if not path.is_file():
        raise SpeechkitError(f"text file {path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig") as file:
        return file.read().splitlines()


def read_pairs(source: str | Path, target: str | Path) -> list[tuple[str, str, str]]:
    """``(id, source, target)`` of two aligned files; unequal line counts or an empty line are errors naming it."""
    sources, targets = read_lines(source), read_lines(target)
    if len(sources) != len(targets):
        raise SpeechkitError(f"{source} has {len(sources)} lines but {target} has {len(targets)}: expected aligned "
                             "files, one sentence a line")
    name = Path(source).name
    for index, (s, t) in enumerate(zip(sources, targets)):
        if not s.strip() or not t.strip():
            raise SpeechkitError(f"{source if not s.strip() else target} line {index + 1} is empty")
    return [(f"{name}:{i + 1}", s.strip(), t.strip()) for i, (s, t) in enumerate(zip(sources, targets))]


class _PairBatches(IterableDataset):
    """Batches of ``batch_size`` pairs, shuffled every epoch (seed + epoch) when ``shuffle``."""

    def __init__(self, pairs: list[tuple[str, str, str]], batch_size: int, shuffle: bool, seed: int) -> None:
        self.pairs, self.batch_size, self.shuffle, self.seed, self.epoch = pairs, batch_size, shuffle, seed, 0

    def __iter__(self) -> Iterator[TextPairBatch]:
        order = list(range(len(self.pairs)))
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(order)
            self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            rows = [self.pairs[i] for i in order[start:start + self.batch_size]]
            yield TextPairBatch(sources=[r[1] for r in rows], targets=[r[2] for r in rows], ids=[r[0] for r in rows])

    def __len__(self) -> int:
        return (len(self.pairs) + self.batch_size - 1) // self.batch_size


class TextPairDataModule(L.LightningDataModule):
    """Aligned text files -> ``TextPairBatch`` es.

    Args:
        train_source: training source sentences (e.g. ``multi30k/train.en.gz``).
        train_target: training target sentences, line-aligned.
        dev_source: validation sources.
        dev_target: validation targets.
        test_source: test sources (``speechkit test``).
        test_target: test targets.
        batch_size: training sentence pairs per batch.
        val_batch_size: validation / test pairs per batch (file order).
        seed: shuffling seed.
    """

    def __init__(self, train_source: str | None = None, train_target: str | None = None,
                 dev_source: str | None = None, dev_target: str | None = None,
                 test_source: str | None = None, test_target: str | None = None,
                 batch_size: int = 64, val_batch_size: int = 64, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1 or val_batch_size < 1:
            raise SpeechkitError(f"batch_size, val_batch_size: expected >= 1, got {batch_size}, {val_batch_size}")
        self.files = {"train": (train_source, train_target), "dev": (dev_source, dev_target),
                      "test": (test_source, test_target)}
        self.batch_size, self.val_batch_size, self.seed = batch_size, val_batch_size, seed

    def _pairs(self, split: str) -> list[tuple[str, str, str]]:
        source, target = self.files[split]
        if source is None or target is None:
            raise SpeechkitError(f"TextPairDataModule: {split}_source and {split}_target are both needed")
        return read_pairs(source, target)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        size = self.batch_size if split == "train" else self.val_batch_size
        return DataLoader(_PairBatches(self._pairs(split), size, shuffle, self.seed), batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("dev", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
