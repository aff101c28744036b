"""The ASR stage of SQuTR's cascades (Li et al., 2026, section 4.1: "ASR -> transcript -> text retriever").

A recognizer is a callable from spoken queries to transcripts with a ``name`` (and a ``cache_key`` saying what
determines its output). Three kinds:

* ``oracle``: returns each query's text; its rows must equal the text-only rows exactly (a check of the harness);
* ``drop:<rate>``: the query's text with each word dropped with probability ``rate`` (a simulated ASR whose
  errors grow with ``rate``: the draws are nested, a word dropped at one rate is dropped at every higher one);
* any Whisper that ``speechkit transcribe`` loads: ``ct2:tiny.en``, ``ct2:base``, a ``speechkit fit`` checkpoint,
  a Hugging Face or CTranslate2 folder. Decoded greedily in batches of similar length, in English by default,
  without the temperature fallback of long-form transcription (one pass, as a search front end would run it;
  Whisper's no-speech rule still blanks what it takes for silence).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from speechkit.errors import SpeechkitError

Progress = Callable[[int], None]
MAX_QUERY_TOKENS = 64  # a spoken query is a sentence at most; a decoder caught in a loop stops here


@dataclass(frozen=True)
class SpokenQuery:
    """One query of a condition: its id, its text (the reference) and its audio (16 kHz file; ``None``: text)."""

    id: str
    text: str
    audio: Optional[Path] = None


class Recognizer(Protocol):
    """Spoken queries -> transcripts, in order; ``progress(n)`` after every ``n`` done."""

    name: str
    cache_key: str

    def __call__(self, queries: Sequence[SpokenQuery], progress: Progress = lambda n: None) -> list[str]: ...


class OracleASR:
    """The perfect recognizer: the query's text."""

    name = cache_key = "oracle"

    def __call__(self, queries: Sequence[SpokenQuery], progress: Progress = lambda n: None) -> list[str]:
        progress(len(queries))
        return [query.text for query in queries]


class WordDropASR:
    """Each word of the query's text dropped with probability ``rate`` (draws nested across rates)."""

    def __init__(self, rate: float, seed: int = 0) -> None:
        if not 0.0 <= rate <= 1.0:
            raise SpeechkitError(f"drop:{rate}: the word-drop rate must be between 0 and 1")
        self.rate, self.seed = rate, seed
        self.name = self.cache_key = f"drop:{rate:g}"

    def _uniform(self, query_id: str, position: int) -> float:
        digest = hashlib.sha256(f"{self.seed}:{query_id}:{position}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def __call__(self, queries: Sequence[SpokenQuery], progress: Progress = lambda n: None) -> list[str]:
        progress(len(queries))
        return [" ".join(word for i, word in enumerate(query.text.split()) if self._uniform(query.id, i) >= self.rate)
                for query in queries]


def read_audio(path: Path, sample_rate: int = 16000) -> np.ndarray:
    """A mono float32 waveform ``(T,)`` of a file at ``sample_rate`` (an error naming the file otherwise)."""
    import soundfile

    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise SpeechkitError(f"{path}: {rate} Hz; expected {sample_rate} Hz audio")
    return samples.mean(axis=1)


class WhisperASR:
    """A Whisper model loaded as ``speechkit transcribe`` loads it, decoding short queries greedily in batches."""

    def __init__(self, model: str, language: Optional[str] = "en", batch_size: int = 16,
                 device: Optional[str] = None) -> None:
        if batch_size < 1:
            raise SpeechkitError(f"batch_size {batch_size}: must be at least 1")
        self.model_name, self.language, self.batch_size, self.device = model, language, batch_size, device
        self.name = model
        path = Path(model)
        stamp = f":{path.stat().st_size}:{path.stat().st_mtime_ns}" if path.is_file() else ""
        self.cache_key = f"whisper:{model}{stamp}:{language}"
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            import torch

            from speechkit.inference.models import load_model
            from speechkit.models.whisper_decode import DecodeOptions, check_language

            loaded = load_model(self.model_name)
            language = self.language if self.language is not None else loaded.default_language
            code = check_language(loaded.bundle, language, self.model_name)
            options = DecodeOptions(input_length="variable" if loaded.variable_length else "30s",
                                    temperatures=(0.0,), max_new_tokens=MAX_QUERY_TOKENS)
            loaded.bundle.model.to(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self._loaded = (loaded, code, options)
        return self._loaded

    def __call__(self, queries: Sequence[SpokenQuery], progress: Progress = lambda n: None) -> list[str]:
        from speechkit.models.whisper_decode import decode_short, short_features

        loaded, code, options = self._load()
        waveforms = []
        for query in queries:
            if query.audio is None:
                raise SpeechkitError(f"{self.name}: query {query.id!r} has no audio")
            waveforms.append(read_audio(query.audio))
        order = sorted(range(len(waveforms)), key=lambda i: -len(waveforms[i]))
        texts: list[str] = [""] * len(waveforms)
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            features, lengths = short_features(loaded.bundle, [waveforms[i] for i in batch], options.input_length)
            for index, decoded in zip(batch, decode_short(loaded.bundle, features, lengths, options, code)):
                texts[index] = decoded.text.strip()
            progress(len(batch))
        return texts


def make_recognizer(spec: str, batch_size: int = 16, language: Optional[str] = "en") -> Recognizer:
    """``oracle``, ``drop:<rate>`` or a Whisper model (see the module docstring)."""
    if spec == "oracle":
        return OracleASR()
    if spec.startswith("drop:"):
        try:
            rate = float(spec.split(":", 1)[1])
        except ValueError:
            raise SpeechkitError(f"--asr {spec}: expected drop:<rate between 0 and 1>") from None
        return WordDropASR(rate)
    return WhisperASR(spec, language=language, batch_size=batch_size)
