"""``SpeechDataModule``: one LightningDataModule over Lhotse CutSets for every task.

Training uses Lhotse's ``DynamicBucketingSampler`` (duration buckets estimated from the training cuts, or given
as 1-D / 2-D bins with optional per-bucket batch sizes). Under DDP every rank gets a distinct, equal share and
the same bucket each step (``sync_buckets``); the Trainer must run with ``use_distributed_sampler: false``.
Validation and test use static batches of ``val_batch_size`` cuts, counted once from the cuts' metadata so that
the progress bar has a total (``CountedSampler``). A task that wants token ids defines
``tokenize(text) -> list[int]`` (and optionally ``pad_token_id``); the data module picks them up in ``setup``.

Before the first step ``setup`` reads the manifests the stage will use (``check_data``) and refuses, in one line
naming the manifest, line and cut: a truncated or malformed manifest; a dev/test audio file that is missing or
does not open (a header read, no decoding); a cut longer than the task takes (its ``max_input_seconds``, e.g.
30 s for Whisper; for training, times the smallest speed-perturbation factor below 1; training cuts are left out
and reported instead with ``drop_too_long``); a supervision whose language is not the task's
``expected_language`` (unless ``allow_language_mismatch``); with ``video_field``, a cut without that video field
or whose video and audio durations differ by more than a frame. Training manifests are checked from their durations
and languages only; their audio is not opened.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Optional

import lightning as L
from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler, SimpleCutSampler
from lhotse.dataset.sampling.base import CutSampler
from torch.utils.data import DataLoader, Sampler

from speechkit.data.augment import BatchAugment, spec_augment
from speechkit.data.config import DataConfig
from speechkit.data.dataset import SpeechDataset
from speechkit.data.manifests import ManifestReport, check_manifest, load_cuts, summarize
from speechkit.data.sampling import TaskTokenCounter
from speechkit.data.video import check_video
from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)


class NotLongerThan:
    """A picklable cut filter: ``cut.duration <= seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, cut: Any) -> bool:
        return cut.duration <= self.seconds


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


class CountedSampler(Sampler):
    """An evaluation sampler with a length, so that Lightning's progress bar shows a total and the time left (a
    Lhotse sampler has no length: ``2/--``). The batches are counted once, by running the sampler over the cuts'
    metadata (no audio is loaded); iterating it again starts it over.
    """

    def __init__(self, sampler: CutSampler) -> None:
        self.sampler = sampler
        self.num_batches = sum(1 for _ in sampler)

    def __iter__(self) -> Iterator[CutSet]:
        return iter(self.sampler)

    def __len__(self) -> int:
        return self.num_batches


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
        self._train_max_seconds: Optional[float] = None  # set by check_data when drop_too_long leaves cuts out

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
        self.check_data(
            stage, getattr(model, "max_input_seconds", None), getattr(model, "expected_language", None),
            validates=self._validates(model),
        )

    # ----------------------------------------------------------------- checks before the first step
    def _validates(self, model: Any) -> bool:
        """Whether ``fit`` will run validation (the task has a ``validation_step`` and the trainer runs it)."""
        if model is None or self.trainer is None:
            return self.config.dev_cuts is not None
        from lightning.pytorch.utilities.model_helpers import is_overridden

        return is_overridden("validation_step", model, L.LightningModule) and self.trainer.limit_val_batches != 0

    def train_limit(self, max_input_seconds: Optional[float]) -> Optional[float]:
        """The longest training cut the task takes: speed perturbation by ``f < 1`` stretches a cut by ``1 / f``."""
        if max_input_seconds is None:
            return None
        factors = self.config.speed_perturb if self.config.speed_perturb_prob > 0 else []
        return max_input_seconds * min([1.0, *factors])

    def check_data(
        self,
        stage: Optional[str],
        max_input_seconds: Optional[float] = None,
        language: Optional[str] = None,
        validates: bool = True,
    ) -> dict[str, ManifestReport]:
        """Read every manifest the stage uses once and refuse what would fail later (see the module docstring).

        ``fit`` checks train (durations, languages), dev (when it validates) and, when given, test and noise
        (audio headers too); ``validate`` dev; ``test`` and ``predict`` test.

        Args:
            stage: Lightning's stage (``fit``, ``validate``, ``test``, ``predict``; ``None`` = ``fit``).
            max_input_seconds: the longest cut the task takes (``None``: no limit).
            language: the language every supervision must carry (``None``: not checked).
            validates: whether ``fit`` runs validation (then ``dev_cuts`` is required).

        Returns:
            One report per manifest key checked.

        Raises:
            SpeechkitError: one line naming the manifest, line and cut of the first problem found.
        """
        c = self.config
        eval_split = {"validate": "dev", "test": "test", "predict": "test"}
        if (stage or "fit") == "fit":
            required = {"train": True, "dev": validates, "test": False}
        elif stage in eval_split:
            required = {eval_split[stage]: True}
        else:
            return {}
        reports = {}
        for split, needed in required.items():
            paths = getattr(c, f"{split}_cuts")
            if paths is None:
                if needed:
                    why = ", but the trainer validates (or set trainer.limit_val_batches: 0)" if split == "dev" else ""
                    raise SpeechkitError(f"data config has no {split}_cuts manifest{why}")
                continue
            train = split == "train"
            limit = self.train_limit(max_input_seconds) if train else max_input_seconds
            start = time.perf_counter()
            report = check_manifest(paths, f"{split}_cuts", limit, language, open_audio=not train)
            self._judge(report, limit, max_input_seconds, language)
            if c.video_field is not None:
                check_video(paths, f"{split}_cuts", c.video_field)
            log.info("%s: %d cuts checked (%d audio headers read) in %.1f s", report.what, report.cuts,
                     report.audio_files, time.perf_counter() - start)
            reports[report.what] = report
        if (stage or "fit") == "fit" and c.noise_cuts:
            report = check_manifest(c.noise_cuts, "noise_cuts", open_audio=True)
            self._judge(report, None, None, None)
            reports[report.what] = report
        return reports

    def _judge(
        self,
        report: ManifestReport,
        limit: Optional[float],
        max_input_seconds: Optional[float],
        language: Optional[str],
    ) -> None:
        """Raise on what ``check_manifest`` found, or leave it out and report it where the config allows."""
        c, what, loud = self.config, report.what, self._rank_world()[0] == 0
        if report.unreadable:
            raise SpeechkitError(f"{what}: {len(report.unreadable)} of {report.cuts} cuts have audio that does not "
                                 f"open (checked before training): {summarize(report.unreadable)}")
        if report.too_long:
            stretch = "" if limit == max_input_seconds else (
                f" (the task takes {max_input_seconds:g} s; speed_perturb {min(c.speed_perturb):g} stretches a cut "
                f"to {1 / min(c.speed_perturb):.3g}x)")
            if what == "train_cuts" and c.drop_too_long:
                self._train_max_seconds = limit
                if loud:
                    log.warning("%s: drop_too_long leaves out %d of %d cuts longer than %.2f s%s: %s", what,
                                len(report.too_long), report.cuts, limit, stretch,
                                ", ".join(repr(f.cut_id) for f in report.too_long))
            else:
                fix = ("set data.init_args.config.drop_too_long: true to leave them out (counted and reported), or "
                       "split them" if what == "train_cuts" else "an evaluation set is never filtered: split them "
                       "or remove them from the manifest")
                raise SpeechkitError(f"{what}: {len(report.too_long)} of {report.cuts} cuts are longer than the "
                                     f"{limit:.2f} s the model takes{stretch}: {summarize(report.too_long)}; {fix}")
        if report.other_language:
            if not c.allow_language_mismatch:
                raise SpeechkitError(
                    f"{what}: {len(report.other_language)} of {report.cuts} cuts are not in the configured language "
                    f"{language!r}: {summarize(report.other_language)}; set the task's language to the data's, or "
                    "data.init_args.config.allow_language_mismatch: true if that is intended")
            if loud:
                log.warning("%s: allow_language_mismatch: %d of %d cuts are not in %r (%s)", what,
                            len(report.other_language), report.cuts, language, summarize(report.other_language))
        if report.no_language and loud:
            log.info("%s: %d of %d cuts name no language (not compared with %r)", what, report.no_language,
                     report.cuts, language)

    def _cuts(self, split: str) -> CutSet:
        paths = getattr(self.config, f"{split}_cuts")
        if paths is None:
            raise SpeechkitError(f"data config has no {split}_cuts manifest")
        cuts = load_cuts(paths, f"{split}_cuts")
        if split == "train" and self._train_max_seconds is not None:  # drop_too_long, reported by check_data
            cuts = cuts.filter(NotLongerThan(self._train_max_seconds))
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
            reason = str(error) or ("Lhotse's bucketing sampler needs at least 2 buckets (for one bucket of fixed "
                                    "size use max_cuts)" if c.num_buckets < 2 else "Lhotse refused the bucket bins")
            raise SpeechkitError(f"data config num_buckets={c.num_buckets}: {reason}") from error

    def _token_counter(self) -> Optional[TaskTokenCounter]:
        """The task's token count of a cut (the one ``speechkit bins -c`` and ``batch-sizes -c`` use)."""
        return None if self.tokenizer is None else TaskTokenCounter(self.tokenizer, self.config.text_field)

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
        return self._loader(self.dataset(train=False), CountedSampler(sampler))

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
