"""``AVCTCFinetune``: character CTC on the audio-visual student, for ASR, lip reading (VSR) and AVSR.

*Audio-Visual Representation Learning via Knowledge Distillation from Speech Foundation Models* (Zhang et al.,
arXiv 2502.05766), section 4: the distilled student is fine-tuned for audio-only (``modalities: audio``),
video-only (``video``) and audio-visual (``audio_video``, with modality dropout in training) recognition, and
evaluated clean and with babble / noise at several SNRs. The student is ``speechkit.models.av_student.AVStudent``
(from scratch, or its ``student.*`` weights from an ``AVDistill`` checkpoint, ``pretrained``); a linear layer gives
per-frame (25 fps) log-probabilities over blank + characters, trained with CTC (Graves et al. 2006) as
``speechkit.tasks.ctc_finetune``, decoded greedily or by prefix beam search (``speechkit.models.ctc_decode``),
scored by ``speechkit.metrics`` (``val_wer``, ``test_wer``, raw and normalized). ``test_snr`` mixes ``noise_cuts``
into the test audio at that SNR (the same noise window per cut id on every run); ``train_snr`` into training audio.

Dimension legend: ``B`` utterances, ``S`` samples, ``T`` frames at 25 fps, ``V`` characters + blank.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict
from typing import Any, Literal, Optional, Union

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from speechkit.checkpoints import load_part, prefixed_weights
from speechkit.data.batches import VIDEO_FRAME_SHIFT, SpeechBatch
from speechkit.data.noise_mix import NoiseBank
from speechkit.errors import SpeechkitError
from speechkit.metrics.stateful import WERMetric
from speechkit.models.av_student import AVStudent, AVStudentConfig, Modalities, student_config
from speechkit.tasks.av_distill import check_audio
from speechkit.tasks.ctc_finetune import CTCRecognition
from speechkit.text.characters import BLANK, ENGLISH_ALPHABET, CharTokenizer
from speechkit.text.normalizers import NormalizerKind

STUDENT_PREFIX = "student."


def student_weights(path: str) -> dict[str, torch.Tensor]:
    """The ``student.*`` weights of an ``AVDistill`` (or ``AVCTCFinetune``) checkpoint, prefix removed."""
    return prefixed_weights(path, STUDENT_PREFIX, "an AVDistill or AVCTCFinetune checkpoint")


def noise_generator(cut_id: str, seed: int) -> torch.Generator:
    """A generator seeded by the cut id: a cut gets the same noise window on every run and in every batch."""
    return torch.Generator().manual_seed(zlib.crc32(cut_id.encode()) + seed)


class AVCTCFinetune(CTCRecognition, L.LightningModule):
    """Character CTC on the audio-visual student.

    Args:
        alphabet: output characters (blank is id 0); include ``" "`` for word boundaries.
        student: the student's sizes (those of the ``AVDistill`` run when ``pretrained`` is given).
        modalities: ``audio`` (ASR), ``video`` (VSR) or ``audio_video`` (AVSR).
        pretrained: an ``AVDistill`` checkpoint whose ``student.*`` weights are loaded; ``None`` = from scratch.
        noise_cuts: a noise manifest (e.g. babble) for ``train_snr`` / ``test_snr``.
        train_snr: ``(low, high)`` dB drawn per batch for training audio, when ``noise_cuts`` is set; ``None`` = clean.
        test_snr: SNR of the noise mixed into validation and test audio; ``None`` = clean.
        noise_seed: mixed into the per-cut noise draws of evaluation.
        decoding: ``greedy`` or ``beam`` (prefix beam search, no language model).
        beam_size: beams of ``beam`` decoding.
        language: language code of the WER normalizer.
        normalizer: the normalized WER's normalizer (``speechkit.metrics``).
        predictions_file: where ``speechkit test`` writes ``{"id", "ref", "hyp"}`` lines.
        optimizer: optimizer factory (LightningCLI ``class_path`` / ``init_args``).
        scheduler: learning-rate scheduler factory, stepped every optimizer step; ``None`` = constant.
    """

    checkpoint_fixed_args: tuple[str, ...] = ("alphabet", "student")
    checkpoint_source_args: tuple[str, ...] = ("pretrained",)
    pad_token_id = BLANK
    frames = "frames at 25 fps"  # named in the CTC too-short error
    frame_shift = VIDEO_FRAME_SHIFT

    def __init__(
        self,
        alphabet: str = ENGLISH_ALPHABET,
        student: Union[AVStudentConfig, dict[str, Any]] = AVStudentConfig(),
        modalities: Modalities = "audio_video",
        pretrained: Optional[str] = None,
        noise_cuts: Optional[str] = None,
        train_snr: Optional[tuple[float, float]] = None,
        test_snr: Optional[float] = None,
        noise_seed: int = 0,
        decoding: Literal["greedy", "beam"] = "greedy",
        beam_size: int = 8,
        language: str = "en",
        normalizer: NormalizerKind = "auto",
        predictions_file: Optional[str] = None,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        scheduler: Optional[LRSchedulerCallable] = None,
    ) -> None:
        super().__init__()
        student = student_config(student)
        if (train_snr is not None or test_snr is not None) and noise_cuts is None:
            raise SpeechkitError("train_snr / test_snr need noise_cuts (a noise manifest to mix in)")
        if decoding not in ("greedy", "beam") or beam_size < 1:
            raise SpeechkitError(f"decoding, beam_size: expected greedy|beam and >= 1, got {decoding!r}, {beam_size}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.hparams["student"] = asdict(student)
        self.tokenizer = CharTokenizer(alphabet)
        self.student = AVStudent(student)
        self.output = nn.Linear(student.dim, len(self.tokenizer))
        if pretrained is not None:
            self.load_student(pretrained)
        self.noise = NoiseBank(noise_cuts) if noise_cuts else None
        self.wer = WERMetric(language=language, normalizer=normalizer)
        self.predictions: list[dict[str, str]] = []
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def load_student(self, path: str) -> None:
        """Load a checkpoint's ``student.*`` weights by name; a missing, extra or misshapen one names itself."""
        load_part(self.student, student_weights(path), path, "student")

    def noisy_audio(self, batch: SpeechBatch) -> torch.Tensor:
        """The audio the student hears: with noise at ``train_snr`` (training) or ``test_snr`` (evaluation)."""
        if self.noise is None or self.hparams.modalities == "video":
            return batch.inputs
        if self.training:
            if self.hparams.train_snr is None:
                return batch.inputs
            snr = float(torch.empty(()).uniform_(*self.hparams.train_snr))
            return self.noise.mix(batch.inputs, batch.input_lens, snr)
        if self.hparams.test_snr is None:
            return batch.inputs
        out = batch.inputs.clone()
        for row, cut_id in enumerate(batch.cut_ids):
            n = batch.input_lens[row:row + 1]
            generator = noise_generator(cut_id, self.hparams.noise_seed)
            out[row:row + 1] = self.noise.mix(batch.inputs[row:row + 1], n, self.hparams.test_snr, generator)
        return out

    def forward(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities ``(B, T, V)`` and output lengths ``(B,)``."""
        if self.hparams.modalities != "video":
            check_audio(batch)
        hidden, lens = self.student(self.noisy_audio(batch), batch.input_lens, batch.video, batch.video_lens,
                                    self.hparams.modalities, False, batch.cut_ids)
        return self.output(hidden[-1]).log_softmax(-1), lens

    def batch_log_probs(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self(batch)
