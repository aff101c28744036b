"""Batches for masked speech modelling: span masks drawn in the data loader, from the cuts' scorer confidences.

The task says how to mask (:class:`MaskingConfig`: random or Ask2Mask spans, ``p``, span, quantile, and how many
encoder frames an utterance of ``T`` feature frames has); :class:`MaskedSpeechDataModule` picks it up from the task
in ``setup`` (as ``SpeechDataModule`` picks up ``tokenize``) and its dataset returns a :class:`MaskedBatch`: the
``SpeechBatch`` plus a ``(B, T')`` mask and each utterance's confidence. Confidences are the cut's custom
``TemporalArray`` written by ``speechkit scorer-confidences`` (per-frame max posterior of a scorer), resampled
(linear interpolation) to the encoder's frame count; the utterance confidence is their mean (*Ask2Mask: Guided Data
Selection for Masked Speech Modeling*, Baskar et al. 2022, section 3; ``../shared/papers/speech.md`` section 3).

An utterance shorter than one span stays unmasked (it adds nothing to the loss; ``MaskedSpeechDataModule`` counts such
training cuts before training and logs the count): the masking functions refuse a span longer than the utterance.
A batch's masks depend only on the seed and the batch's cut ids (a generator seeded from them): a resumed run draws
what the uninterrupted one drew, whatever the number of workers, and validation masks are the same every time.
Dimension legend: ``B`` cuts, ``T`` feature frames, ``T'`` encoder frames.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Callable, Literal, Optional

import torch
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.utils import compute_num_frames
from torch.nn import functional as F

from speechkit.data.batches import SpeechBatch
from speechkit.data.config import DataConfig
from speechkit.data.datamodule import SpeechDataModule
from speechkit.data.dataset import SpeechDataset
from speechkit.data.manifests import load_cuts
from speechkit.data.masking import ask2mask_span_mask, check_mask_options, random_span_mask
from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)

FBANK_FRAME_SHIFT = 0.01  # seconds (the data module's Kaldi fbank)
MaskingMode = Literal["random", "ask2mask"]
CONFIDENCE_FIELD = "confidence"  # the cut's TemporalArray of per-frame confidences
UTTERANCE_CONFIDENCE_FIELD = "utterance_confidence"  # their mean, also stored on the cut


@dataclass(frozen=True)
class MaskingConfig:
    """How the data loader masks a task's batches.

    Args:
        mode: ``random`` (wav2vec2 spans) or ``ask2mask`` (starts on confident frames).
        mask_prob: ``p``, probability of a frame being a span start.
        span: frames per span.
        quantile: Ask2Mask's eligibility quantile of the utterance's confidences.
        encoder_frames: ``(B,)`` feature frames -> ``(B,)`` encoder frames (the task's subsampling).
        load_confidences: read the cuts' confidences (needed by ``ask2mask`` and by utterance weighting).
        seed: mixed into every batch's generator.
    """

    mode: MaskingMode
    mask_prob: float
    span: int
    quantile: float
    encoder_frames: Callable[[torch.Tensor], torch.Tensor]
    load_confidences: bool
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("random", "ask2mask"):
            raise SpeechkitError(f"masking: expected 'random' or 'ask2mask', got {self.mode!r}")
        check_mask_options(self.span, self.mask_prob, self.span)  # p in (0, 1), span >= 1 (lengths: per cut)


@dataclass
class MaskedBatch:
    """A ``SpeechBatch`` with its span masks.

    Attributes:
        speech: the batch (``inputs`` ``(B, T, F)`` features).
        mask: ``(B, T')`` bool, True at masked encoder frames (False on padding).
        utterance_confidence: ``(B,)`` mean scorer confidence per cut (ones when confidences are not loaded).
    """

    speech: SpeechBatch
    mask: torch.Tensor
    utterance_confidence: torch.Tensor

    def __len__(self) -> int:
        return len(self.speech)


def resample_frames(values: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``(N,)`` per-frame values -> ``(num_frames,)`` by linear interpolation (frame centres aligned)."""
    if values.numel() == num_frames:
        return values.float()
    if values.numel() == 1:
        return values.float().expand(num_frames).clone()
    return F.interpolate(values.float()[None, None], size=num_frames, mode="linear", align_corners=False)[0, 0]


def cut_confidence(cut: Cut) -> torch.Tensor:
    """The cut's per-frame confidences ``(N,)``; missing ones are an error naming the cut and the fix."""
    if not cut.has_custom(CONFIDENCE_FIELD):
        raise SpeechkitError(f"cut {cut.id!r}: no {CONFIDENCE_FIELD!r} field: Ask2Mask and utterance weighting need "
                             "scorer confidences; run speechkit scorer-confidences MODEL CUTS OUT and train on OUT")
    try:
        values = torch.as_tensor(cut.load_custom(CONFIDENCE_FIELD)).flatten().float()
    except Exception as error:  # a moved or deleted array file: name the cut
        raise SpeechkitError(f"cut {cut.id!r}: cannot load its {CONFIDENCE_FIELD!r} array: {error}") from error
    if values.numel() == 0:
        raise SpeechkitError(f"cut {cut.id!r}: its {CONFIDENCE_FIELD!r} array is empty")
    return values


def batch_generator(seed: int, cut_ids: list[str]) -> torch.Generator:
    """A generator seeded from ``seed`` and the batch's cut ids."""
    digest = hashlib.sha256(f"{seed}:{','.join(cut_ids)}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


class MaskedSpeechDataset:
    """``CutSet`` -> :class:`MaskedBatch`: the ``SpeechDataset`` batch plus masks drawn per cut.

    Args:
        speech: the task dataset giving features.
        masking: how to mask (from the task).
    """

    def __init__(self, speech: SpeechDataset, masking: MaskingConfig) -> None:
        self.speech = speech
        self.masking = masking

    def __getitem__(self, cuts: CutSet) -> MaskedBatch:
        batch = self.speech[cuts]
        by_id = {cut.id: cut for cut in cuts}
        frames = self.masking.encoder_frames(batch.input_lens)  # (B,)
        generator = batch_generator(self.masking.seed, batch.cut_ids)
        mask = torch.zeros(len(batch), int(frames.max()), dtype=torch.bool)
        utterance = torch.ones(len(batch))
        for row, cut_id in enumerate(batch.cut_ids):
            count = int(frames[row])
            confidence = None
            if self.masking.load_confidences:
                confidence = resample_frames(cut_confidence(by_id[cut_id]), count)
                utterance[row] = confidence.mean()
            mask[row, :count] = self._mask(cut_id, count, confidence, generator)
        return MaskedBatch(speech=batch, mask=mask, utterance_confidence=utterance)

    def _mask(self, cut_id: str, count: int, confidence: Optional[torch.Tensor],
              generator: torch.Generator) -> torch.Tensor:
        m = self.masking
        if count < m.span:  # shorter than one span: left unmasked (no loss), counted before training
            return torch.zeros(count, dtype=torch.bool)
        try:
            if m.mode == "ask2mask":
                return ask2mask_span_mask(confidence, m.mask_prob, m.span, m.quantile, generator)
            return random_span_mask(count, m.mask_prob, m.span, generator)
        except SpeechkitError as error:
            raise SpeechkitError(f"cut {cut_id!r} ({count} encoder frames): {error}") from None


class MaskedSpeechDataModule(SpeechDataModule):
    """``SpeechDataModule`` whose batches carry span masks (:class:`MaskedBatch`); the task gives ``masking``.

    Args:
        config: every data option (see ``DataConfig``).
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__(config)
        self.masking: Optional[MaskingConfig] = None

    def setup(self, stage: Optional[str] = None) -> None:
        super().setup(stage)
        model = self.trainer.lightning_module if self.trainer is not None else None
        self.masking = getattr(model, "masking", None)
        if self.masking is None:
            raise SpeechkitError("MaskedSpeechDataModule: the task has no 'masking' (a MaskingConfig); use it with "
                                 "a masked task such as speechkit.tasks.msm_pretrain.MaskedSpeechPretrain")
        if (stage or "fit") == "fit" and self.config.train_cuts is not None:
            check_masked_cuts(self.config.train_cuts, "train_cuts", self.masking)

    def dataset(self, train: bool) -> MaskedSpeechDataset:  # type: ignore[override]
        """Training masks as the task says; validation and test always random spans and no weighting, so that
        ``val_loss`` compares runs of every masking mode on the same masks (and dev cuts need no confidences)."""
        if self.masking is None:
            raise SpeechkitError("MaskedSpeechDataModule: setup() has not run (no masking from the task)")
        masking = self.masking if train else replace(self.masking, mode="random", load_confidences=False)
        return MaskedSpeechDataset(super().dataset(train), masking)


def check_masked_cuts(paths: object, what: str, masking: MaskingConfig) -> int:
    """Before training: every cut carries confidences when the masking needs them (an error names the first that
    does not); the cuts shorter than one span, which stay unmasked, are counted and logged. Returns that count."""
    missing, short, total = [], 0, 0
    for cut in load_cuts(paths, what):
        total += 1
        if masking.load_confidences and not cut.has_custom(CONFIDENCE_FIELD):
            missing.append(cut.id)
        fbank_frames = compute_num_frames(cut.duration, FBANK_FRAME_SHIFT, cut.sampling_rate)
        short += int(masking.encoder_frames(torch.tensor(fbank_frames))) < masking.span
    if missing:
        raise SpeechkitError(f"{what}: {len(missing)} cuts have no {CONFIDENCE_FIELD!r} field (first: {missing[0]!r}); "
                             "Ask2Mask and utterance weighting need scorer confidences: run speechkit "
                             "scorer-confidences MODEL CUTS OUT and train on OUT")
    if short:
        log.warning("%s: %d of %d cuts are shorter than one mask span (%d encoder frames): they stay unmasked and add "
                    "nothing to the loss", what, short, total, masking.span)
    return short
