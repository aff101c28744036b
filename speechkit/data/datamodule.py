"""``SpeechDataModule``: one LightningDataModule over Lhotse CutSets for every task.

Training uses Lhotse's ``DynamicBucketingSampler`` (duration buckets estimated from the training cuts, or given
as 1-D / 2-D bins with optional per-bucket batch sizes). Under DDP every rank gets a distinct, equal share and
the same bucket each step (``sync_buckets``); the Trainer must run with ``use_distributed_sampler: false``.
Validation and test use static batches of ``val_batch_size`` cuts. A task that wants token ids defines
``tokenize(text) -> list[int]`` (and optionally ``pad_token_id``); the data module picks them up in ``setup``.
"""

from __future__ import annotations

import logging
from typing import Any, Iterator, Optional, Union

import lightning as L
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler
from lhotse.dataset.sampling.base import CutSampler
from torch.utils.data import DataLoader, Sampler

from speechkit.data.augment import BatchAugment, spec_augment
from speechkit.data.config import DataConfig
from speechkit.data.dataset import SpeechDataset
from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)


def load_cuts(paths: Union[str, list[str]], what: str) -> CutSet:
    """Reads one or more Lhotse cut manifests (lazily); a missing or non-Lhotse file is an error naming it."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    sets = []
    for path in paths:
        try:
            cuts = CutSet.from_file(path)
            first = next(iter(cuts), None)  # forces a parse of the first line
        except FileNotFoundError as error:
            raise SpeechkitError(f"{what}: manifest {path} does not exist") from error
        except Exception as error:
            raise SpeechkitError(f"{what}: {path} is not a Lhotse cut manifest (JSONL of cuts): {error}") from error
        if first is None:
            raise SpeechkitError(f"{what}: manifest {path} holds no cuts")
        if not hasattr(first, "recording"):
            raise SpeechkitError(f"{what}: {path} holds {type(first).__name__} items, not cuts (use cuts_*.jsonl.gz)")
        sets.append(cuts)
    cuts = sets[0]
    for other in sets[1:]:
        cuts = cuts + other
    return cuts


class ResumableSampler(Sampler):
    """Wraps a Lhotse sampler so that a resumed run skips the batches the interrupted run already trained on.

    It also applies the cut-level augmentation (``BatchAugment``) to each batch with the batch's epoch and index
    in the epoch, the skipped batches included, so the resumed run augments as the uninterrupted one did.
    """

    def __init__(self, sampler: CutSampler, skip_batches: int = 0, augment: Optional[BatchAugment] = None) -> None:
        self.sampler = sampler
        self.skip_batches = skip_batches
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[CutSet]:
        # Lazy: nothing runs until the first batch is asked for. A DataLoader with workers calls ``iter`` twice and
        # only advances the second iterator; an eager skip would be spent on the first (and ``iter`` on a Lhotse
        # sampler restarts it).
        return self._batches()

    def _batches(self) -> Iterator[CutSet]:
        iterator = iter(self.sampler)
        skip, self.skip_batches = self.skip_batches, 0
        for _ in range(skip):
            next(iterator, None)
        index, epoch = skip, self.epoch
        while True:
            try:
                cuts = next(iterator)  # ``next`` only: ``iter`` on a Lhotse sampler restarts it
            except StopIteration:
                return
            yield cuts if self.augment is None else self.augment(cuts, epoch, index)
            index += 1


class SpeechDataModule(L.LightningDataModule):
    """Lhotse CutSets -> typed batches for any speechkit task.

    Args:
        config: every data option (see ``DataConfig``).
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = None
        self.pad_token_id = 0
        self._resume_batches = 0
        self.train_sampler: Optional[CutSampler] = None

    # ----------------------------------------------------------------- set-up
    def setup(self, stage: Optional[str] = None) -> None:
        model = self.trainer.lightning_module if self.trainer is not None else None
        self.tokenizer = getattr(model, "tokenize", None)
        self.pad_token_id = getattr(model, "pad_token_id", 0)
        if self.trainer is not None and getattr(self.trainer, "_accelerator_connector", None) is not None:
            if self.trainer.world_size > 1 and self.trainer._accelerator_connector.use_distributed_sampler:
                raise SpeechkitError(
                    "trainer.use_distributed_sampler must be false: SpeechDataModule shards data across ranks itself"
                )

    def _cuts(self, split: str) -> CutSet:
        paths = getattr(self.config, f"{split}_cuts")
        if paths is None:
            raise SpeechkitError(f"data config has no {split}_cuts manifest")
        cuts = load_cuts(paths, f"{split}_cuts")
        return cuts.resample(self.config.sampling_rate)

    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return self.trainer.global_rank, self.trainer.world_size

    def dataset(self, train: bool) -> SpeechDataset:
        """The task dataset; training adds SpecAugment (cut-level augmentation: ``train_augment``)."""
        return SpeechDataset(
            self.config,
            tokenizer=self.tokenizer,
            pad_token_id=self.pad_token_id,
            feature_transform=spec_augment(self.config) if train else None,
        )

    def train_augment(self) -> Optional[BatchAugment]:
        """Speed perturbation and noise mixing of training batches (``None`` when both are off); the training
        sampler applies it, with draws fixed by the batch's position (see ``BatchAugment``)."""
        noise = load_cuts(self.config.noise_cuts, "noise_cuts").resample(self.config.sampling_rate) if (
            self.config.noise_cuts
        ) else None
        return BatchAugment.from_config(self.config, noise, rank=self._rank_world()[0])

    # ------------------------------------------------------------ samplers
    def make_train_sampler(self, cuts: CutSet) -> CutSampler:
        """Dynamic bucketing: estimated or given 1-D bins, or 2-D bins with per-bucket batch sizes."""
        c = self.config
        rank, world = self._rank_world()
        common = dict(shuffle=c.shuffle, drop_last=c.drop_last, seed=c.seed, rank=rank, world_size=world,
                      buffer_size=c.buffer_size, shuffle_buffer_size=c.shuffle_buffer_size, sync_buckets=True)
        if c.is_2d or c.bucket_batch_size is not None:
            from speechkit.data.sampling import build_constraint, fixed_batch_sampler

            constraint = build_constraint(
                c.bucket_duration_bins, c.bucket_batch_size, strict=c.bucketing_2d_strict, max_tps=c.bucket_max_tps,
                token_counter=self._token_counter(), max_duration=c.max_duration,
            )
            return fixed_batch_sampler(cuts, constraint, **common)
        try:
            return DynamicBucketingSampler(
                cuts, max_duration=c.max_duration, max_cuts=c.max_cuts, quadratic_duration=c.quadratic_duration,
                num_buckets=c.num_buckets, duration_bins=c.bucket_duration_bins,
                num_cuts_for_bins_estimate=c.num_cuts_for_bins_estimate, **common,
            )
        except AssertionError as error:  # Lhotse checks bins with asserts; the user should see which key to change
            raise SpeechkitError(f"data config num_buckets={c.num_buckets}: {error}") from error

    def _token_counter(self):
        if self.tokenizer is None:
            return None
        from speechkit.data.dataset import cut_text

        field = self.config.text_field
        return lambda cut: len(self.tokenizer(cut_text(cut, field)))

    def _loader(self, dataset: SpeechDataset, sampler: Sampler) -> DataLoader:
        return DataLoader(
            dataset, sampler=sampler, batch_size=None, num_workers=self.config.num_workers,
            persistent_workers=self.config.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        self.train_sampler = self.make_train_sampler(self._cuts("train"))
        augment = self.train_augment()
        sampler = ResumableSampler(self.train_sampler, skip_batches=self._resume_batches, augment=augment)
        self._resume_batches = 0
        return self._loader(self.dataset(train=True), sampler)

    def _eval_loader(self, split: str) -> DataLoader:
        rank, world = self._rank_world()
        sampler = SimpleCutSampler(
            self._cuts(split), max_cuts=self.config.val_batch_size, shuffle=False, rank=rank, world_size=world
        )
        return self._loader(self.dataset(train=False), sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("dev")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # -------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        """Batches of the current epoch the training loop has consumed (restored on resume).

        ``processed``, not ``completed``: checkpoint callbacks run in ``on_train_batch_end``, before Lightning
        counts the batch as completed. With the epoch (restored by Lightning) this is also the state of the
        augmentation's random draws (``BatchAugment``).
        """
        if self.trainer is None:
            return {"train_batches_in_epoch": 0}
        return {"train_batches_in_epoch": int(self.trainer.fit_loop.epoch_loop.batch_progress.current.processed)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_batches = int(state_dict.get("train_batches_in_epoch", 0))
