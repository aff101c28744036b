"""The task dataset: a Lhotse ``CutSet`` (one batch from the sampler) -> ``SpeechBatch``."""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import torch
from lhotse import CutSet
from lhotse.cut import Cut
from lhotse.features import Fbank, FbankConfig
from lhotse.features.whisper_fbank import WhisperFbank, WhisperFbankConfig

from speechkit.data.augment import CutTransform
from speechkit.data.batches import SpeechBatch
from speechkit.data.config import DataConfig
from speechkit.data.sampling import cut_text
from speechkit.data.video import collate_video, load_video
from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)

Tokenizer = Callable[[str], list[int]]


def load_audio(cut: Cut) -> torch.Tensor:
    """Mono audio of a cut as a float tensor ``(T,)``; an unreadable file is an error naming cut and source."""
    try:
        audio = cut.load_audio()
    except Exception as error:  # soundfile/audioread raise many types
        sources = [s.source for s in cut.recording.sources] if cut.has_recording else []
        raise SpeechkitError(f"cut {cut.id!r}: cannot load audio from {sources}: {error}") from error
    return torch.from_numpy(audio[0] if audio.ndim == 2 else audio)


class SpeechDataset(torch.utils.data.Dataset):
    """Turns a CutSet into a ``SpeechBatch``: audio -> features (or waveform), text -> token ids.

    Args:
        config: the data options (input kind, mel bins, text field).
        tokenizer: ``text -> ids`` of the task (including its prompt), or ``None`` for no token ids.
        pad_token_id: the value that pads ``tokens``.
        cut_transforms: cut-level augmentation applied before loading audio (training only).
        feature_transform: feature-level augmentation ``(B, T, F) -> (B, T, F)`` (training only).
    """

    def __init__(
        self,
        config: DataConfig,
        tokenizer: Optional[Tokenizer] = None,
        pad_token_id: int = 0,
        cut_transforms: Sequence[CutTransform] = (),
        feature_transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.pad_token_id = pad_token_id
        self.cut_transforms = list(cut_transforms)
        self.feature_transform = feature_transform
        if config.input == "whisper_fbank":
            self.extractor = WhisperFbank(WhisperFbankConfig(num_filters=config.num_mel_bins))
        elif config.input == "fbank":
            self.extractor = Fbank(FbankConfig(num_mel_bins=config.num_mel_bins))
        else:
            self.extractor = None

    def __getitem__(self, cuts: CutSet) -> SpeechBatch:
        for transform in self.cut_transforms:
            cuts = transform(cuts)
        cuts = cuts.sort_by_duration(ascending=False)
        inputs, input_lens = self._inputs(cuts)
        texts = [cut_text(cut, self.config.text_field) for cut in cuts]
        tokens, token_lens = self._tokens(texts)
        video, video_lens = self._video(cuts)
        return SpeechBatch(
            inputs=inputs,
            input_lens=input_lens,
            texts=texts,
            cut_ids=[cut.id for cut in cuts],
            durations=torch.tensor([cut.duration for cut in cuts], dtype=torch.float32),
            tokens=tokens,
            token_lens=token_lens,
            languages=[cut.supervisions[0].language for cut in cuts],
            custom=[dict(cut.supervisions[0].custom or {}) for cut in cuts],
            video=video,
            video_lens=video_lens,
        )

    def _video(self, cuts: CutSet) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``(B, V, H, W)`` frames in [0, 1] and ``(B,)`` lengths from ``config.video_field``; ``None`` without it."""
        if self.config.video_field is None:
            return None, None
        return collate_video([load_video(cut, self.config.video_field) for cut in cuts])

    def _inputs(self, cuts: CutSet) -> tuple[torch.Tensor, torch.Tensor]:
        for cut in cuts:
            if cut.sampling_rate != self.config.sampling_rate:
                raise SpeechkitError(
                    f"cut {cut.id!r} is at {cut.sampling_rate} Hz; the model takes {self.config.sampling_rate} Hz"
                )
        if self.extractor is None:
            audio = [load_audio(cut) for cut in cuts]
            lens = torch.tensor([a.shape[0] for a in audio], dtype=torch.int64)
            return torch.nn.utils.rnn.pad_sequence(audio, batch_first=True), lens  # (B, T)
        feats = [
            torch.as_tensor(self.extractor.extract(load_audio(cut).numpy(), cut.sampling_rate)) for cut in cuts
        ]
        lens = torch.tensor([f.shape[0] for f in feats], dtype=torch.int64)
        batch = torch.stack([self._pad(f, int(lens.max())) for f in feats])  # (B, T, F)
        if self.feature_transform is not None:
            batch = self.feature_transform(batch)
        return batch, lens

    def _pad(self, feats: torch.Tensor, frames: int) -> torch.Tensor:
        """Pads ``(T, F)`` to ``frames``; Whisper log-mel pads with what silence gives (row max - 2)."""
        value = float(feats.max()) - 2.0 if self.config.input == "whisper_fbank" else float(feats.min())
        return torch.nn.functional.pad(feats, (0, 0, 0, frames - feats.shape[0]), value=value)

    def _tokens(self, texts: list[str]) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        if self.tokenizer is None:
            return None, None
        ids = [torch.tensor(self.tokenizer(text), dtype=torch.int64) for text in texts]
        lens = torch.tensor([len(i) for i in ids], dtype=torch.int64)
        return torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self.pad_token_id), lens
