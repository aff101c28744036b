"""Typed batches: what a task dataset gives a LightningModule.

Lightning moves dataclasses to the device field by field. Dimension legend: ``B`` cuts in the batch, ``T`` frames
(or samples, for waveforms), ``F`` feature bins, ``U`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

VIDEO_FRAME_SHIFT = 0.04  # seconds per video frame (25 fps, as LRS2/LRS3)


@dataclass
class SpeechBatch:
    """One batch of utterances with their text and metadata.

    Attributes:
        inputs: ``(B, T, F)`` features or ``(B, T)`` waveforms, padded.
        input_lens: ``(B,)`` valid frames (or samples) per cut.
        texts: the target text of each cut (transcript, or translation when ``text_field`` says so).
        cut_ids: the cut id of each row, so any prediction traces back to its audio.
        durations: ``(B,)`` seconds of audio per cut.
        tokens: ``(B, U)`` token ids from the task's tokenizer, padded with ``pad_token_id``; ``None`` without one.
        token_lens: ``(B,)`` tokens per cut.
        languages: the supervision language of each cut (``None`` where unset).
        custom: the supervision's ``custom`` fields of each cut (intent, translations, digit ...).
        video: ``(B, V, H, W)`` grayscale mouth-crop frames in ``[0, 1]`` at 25 fps (``VIDEO_FRAME_SHIFT``), padded
            with zeros; ``None`` for audio-only data.
        video_lens: ``(B,)`` valid video frames per cut; ``None`` without video.
    """

    inputs: torch.Tensor
    input_lens: torch.Tensor
    texts: list[str]
    cut_ids: list[str]
    durations: torch.Tensor
    tokens: Optional[torch.Tensor] = None
    token_lens: Optional[torch.Tensor] = None
    languages: list[Optional[str]] = field(default_factory=list)
    custom: list[dict[str, Any]] = field(default_factory=list)
    video: Optional[torch.Tensor] = None
    video_lens: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.cut_ids)
