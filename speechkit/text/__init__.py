"""Text processing: per-language normalizers for scoring (raw and normalized WER)."""

from speechkit.text.normalizers import (
    ARABIC_SCRIPT_LANGUAGES,
    Normalizer,
    NormalizerKind,
    basic_normalize,
    get_normalizer,
    language_code,
    load_english_spelling,
    whisper_english_normalizer,
)

__all__ = [
    "ARABIC_SCRIPT_LANGUAGES",
    "Normalizer",
    "NormalizerKind",
    "basic_normalize",
    "get_normalizer",
    "language_code",
    "load_english_spelling",
    "whisper_english_normalizer",
]
