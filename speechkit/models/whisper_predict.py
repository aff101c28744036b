"""``speechkit predict`` on a Whisper task: a batch of the data module -> the JSONL rows ``speechkit transcribe``
writes."""

from __future__ import annotations

from typing import Any, Optional, Protocol

import torch

from speechkit.data.batches import SpeechBatch
from speechkit.models.whisper_decode import DecodeOptions, check_language, decode_short
from speechkit.models.transcript import Transcript
from speechkit.models.ctranslate2 import WhisperBundle


class WhisperCore(Protocol):
    """What :func:`predict_rows` reads from a Whisper task's core (``speechkit.models.whisper_seq2seq``)."""

    model: torch.nn.Module
    tokenizer: Any
    feature_extractor: Any
    generation_config: Any
    language: Optional[str]
    task: str
    pad_to_30s: bool
    num_beams: int
    max_new_tokens: int

    def features(self, batch: SpeechBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, n_mels, T)`` encoder input and ``(B,)`` real frames."""


def core_options(core: WhisperCore) -> DecodeOptions:
    """The task's decoding settings (beams, length, task, its encoder input) with Whisper's guards on."""
    input_length = "30s" if core.pad_to_30s else "variable"
    return DecodeOptions(task=core.task, num_beams=core.num_beams,  # type: ignore[arg-type]
                         max_new_tokens=core.max_new_tokens, input_length=input_length)


def predict_rows(core: WhisperCore, batch: SpeechBatch,
                 options: Optional[DecodeOptions] = None) -> list[dict[str, Any]]:
    """Decode a batch as ``speechkit transcribe`` does and return its JSONL rows.

    Args:
        core: the task's Whisper core (model, tokenizer, language, ``pad_to_30s``, ``features(batch)`` ...).
        batch: a batch of the data module (features, real frames, cut ids, reference texts).
        options: decoding options; default :func:`core_options`.

    Returns:
        ``{id, path, text, language, segments, duration, ref}`` per cut (``path`` is ``None``: a batch carries
        cut ids, not files).
    """
    bundle = WhisperBundle(core.model, core.tokenizer, core.feature_extractor, core.generation_config)
    features, lengths = core.features(batch)
    language = check_language(bundle, core.language, "the task's model")
    decoded = decode_short(bundle, features, lengths, options or core_options(core), language)
    rows = zip(batch.cut_ids, decoded, batch.durations.tolist(), batch.texts)
    return [Transcript(cut_id, None, d.text, d.language, d.segments, seconds, ref or None).to_json()
            for cut_id, d, seconds, ref in rows]
