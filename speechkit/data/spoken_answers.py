"""Spoken question -> spoken answer data (speech-in, speech-out language models such as Flow-Omni).

A manifest holds one cut per spoken prompt whose supervision's ``custom`` has ``"answer"`` (the answer text) and
``"answer_audio"`` (a sound file of the spoken answer, at the data config's sampling rate). The batch carries the
prompt's features, the answer's token ids (``text_field: answer``) and the answer's mel frames, computed with the
same feature extractor as the prompt and padded to a multiple of ``frames_per_step``.

Dimension legend: ``B`` cuts, ``T`` prompt frames, ``M`` answer frames, ``F`` mel bins, ``U`` answer tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import soundfile as sf
import torch
from lhotse import CutSet

from speechkit.data.batches import SpeechBatch
from speechkit.data.config import DataConfig
from speechkit.data.datamodule import SpeechDataModule
from speechkit.data.dataset import SpeechDataset
from speechkit.errors import SpeechkitError

ANSWER_AUDIO = "answer_audio"


@dataclass
class SpokenAnswerBatch:
    """Prompt features and answer tokens (``speech``), answer mels ``(B, M, F)`` and their lengths ``(B,)``."""

    speech: SpeechBatch
    answer_mels: torch.Tensor
    answer_mel_lens: torch.Tensor

    def __len__(self) -> int:
        return len(self.speech)


class SpokenAnswerDataset:
    """``CutSet`` -> :class:`SpokenAnswerBatch`; answer mels are padded as the prompt's (Whisper log-mel: silence)
    to a multiple of ``frames_per_step``.

    Args:
        speech: the prompt dataset (features, answer token ids); its extractor computes the answer mels.
        frames_per_step: the answer frame count is padded to a multiple of this.
    """

    def __init__(self, speech: SpeechDataset, frames_per_step: int = 1) -> None:
        if speech.extractor is None:
            raise SpeechkitError("SpokenAnswerDataset: input 'waveform' has no mel frames; use whisper_fbank or fbank")
        self.speech = speech
        self.frames_per_step = frames_per_step

    def answer_mel(self, cut_id: str, custom: dict) -> torch.Tensor:
        path = custom.get(ANSWER_AUDIO)
        if not path:
            raise SpeechkitError(f"cut {cut_id!r}: supervision custom has no {ANSWER_AUDIO!r} (the spoken answer file)")
        try:
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
        except Exception as error:  # soundfile raises several types
            raise SpeechkitError(f"cut {cut_id!r}: cannot read answer audio {path}: {error}") from error
        if rate != self.speech.config.sampling_rate:
            raise SpeechkitError(f"cut {cut_id!r}: answer audio {path} is at {rate} Hz; expected "
                                 f"{self.speech.config.sampling_rate} Hz")
        return torch.as_tensor(self.speech.extractor.extract(audio[:, 0], rate))  # (M, F)

    def __getitem__(self, cuts: CutSet) -> SpokenAnswerBatch:
        batch = self.speech[cuts]
        mels = [self.answer_mel(i, c) for i, c in zip(batch.cut_ids, batch.custom)]
        lens = torch.tensor([m.shape[0] for m in mels], dtype=torch.int64)
        width = -(-int(lens.max()) // self.frames_per_step) * self.frames_per_step
        padded = torch.stack([self.speech._pad(m, width) for m in mels])  # (B, M, F)
        return SpokenAnswerBatch(batch, padded, lens)


class SpokenAnswerDataModule(SpeechDataModule):
    """``SpeechDataModule`` whose batches are :class:`SpokenAnswerBatch`; ``frames_per_step`` is read from the
    model (its ``frames_per_step`` attribute) in ``setup``.

    Args:
        config: every data option (see ``DataConfig``); ``text_field`` is the answer text's key (``answer``).
    """

    def __init__(self, config: DataConfig) -> None:
        super().__init__(config)
        self.frames_per_step = 1

    def setup(self, stage: str | None = None) -> None:
        model = self.trainer.lightning_module if self.trainer is not None else None
        self.frames_per_step = int(getattr(model, "frames_per_step", 1))
        super().setup(stage)

    def dataset(self, train: bool) -> SpokenAnswerDataset:  # type: ignore[override]
        return SpokenAnswerDataset(super().dataset(train), self.frames_per_step)
