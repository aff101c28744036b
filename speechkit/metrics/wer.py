"""Word and character error rates via jiwer, always raw and normalized, with their edit counts.

WER = (S + D + I) / N over the whole corpus (not a mean of per-utterance rates), N = reference words; CER the same
over characters (jiwer's character transform: spaces count as characters). Counts are summed, never rates, so
shards and DDP ranks combine exactly (``EditCounts.__add__``).

Typical use::

    report = score_wer(refs, hyps, language="ps")  # normalizer "auto": basic[ps]
    report.wer, report.wer_raw, report.cer, report.words.substitutions
    report.to_dict()  # flat JSON-ready dict: wer, wer_raw, cer, cer_raw, substitutions, ... (rates as fractions)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import jiwer

from speechkit.errors import SpeechkitError
from speechkit.text.normalizers import Normalizer, NormalizerKind, get_normalizer

Unit = Literal["word", "char"]


@dataclass(frozen=True)
class EditCounts:
    """Levenshtein alignment counts summed over utterances (``N = hits + substitutions + deletions``)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0

    @property
    def ref_len(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """(S + D + I) / N; NaN when there is no reference token at all."""
        return error_rate(self.errors, self.ref_len)

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.hits + other.hits,
        )


def error_rate(errors: int | float, ref_len: int | float) -> float:
    """``errors / ref_len`` as a fraction; NaN for ``ref_len == 0`` (undefined, never silently 0)."""
    return float(errors) / float(ref_len) if ref_len else math.nan


def check_pairs(refs: Sequence[str], hyps: Sequence[str]) -> None:
    """Raise ``SpeechkitError`` unless ``refs`` and ``hyps`` are non-empty and of equal length."""
    if len(refs) != len(hyps):
        raise SpeechkitError(f"refs/hyps: expected equal lengths, got {len(refs)} references, {len(hyps)} hypotheses")
    if not refs:
        raise SpeechkitError("refs: expected at least one utterance, got none")


def edit_counts(refs: Sequence[str], hyps: Sequence[str], unit: Unit = "word") -> EditCounts:
    """Align each (reference, hypothesis) pair with jiwer and sum the counts.

    Args:
        refs: reference transcripts (empty strings allowed: their hypothesis words are insertions).
        hyps: hypotheses, same length and order.
        unit: ``"word"`` (jiwer ``process_words``) or ``"char"`` (jiwer ``process_characters``).
    """
    check_pairs(refs, hyps)
    process = jiwer.process_words if unit == "word" else jiwer.process_characters
    out = process(list(refs), list(hyps))
    return EditCounts(out.substitutions, out.deletions, out.insertions, out.hits)


def count_empty(texts: Sequence[str]) -> int:
    """Number of texts with no word (empty or whitespace only)."""
    return sum(1 for text in texts if not text.split())


@dataclass(frozen=True)
class WERReport:
    """Raw and normalized word/character counts of one corpus; rates are fractions (0.25, not 25)."""

    words: EditCounts
    chars: EditCounts
    words_raw: EditCounts
    chars_raw: EditCounts
    utterances: int
    empty_refs: int
    empty_refs_raw: int
    normalizer: str

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate

    @property
    def wer_raw(self) -> float:
        return self.words_raw.rate

    @property
    def cer_raw(self) -> float:
        return self.chars_raw.rate

    def to_dict(self) -> dict[str, float | int | str]:
        """Flat dict: ``wer, wer_raw, cer, cer_raw``, normalized counts, raw counts with suffix ``_raw``."""
        out: dict[str, float | int | str] = {
            "wer": self.wer, "wer_raw": self.wer_raw, "cer": self.cer, "cer_raw": self.cer_raw,
        }  # fmt: skip
        for suffix, words, chars in (("", self.words, self.chars), ("_raw", self.words_raw, self.chars_raw)):
            out |= {
                f"substitutions{suffix}": words.substitutions,
                f"deletions{suffix}": words.deletions,
                f"insertions{suffix}": words.insertions,
                f"hits{suffix}": words.hits,
                f"ref_words{suffix}": words.ref_len,
                f"char_errors{suffix}": chars.errors,
                f"ref_chars{suffix}": chars.ref_len,
            }
        out |= {
            "utterances": self.utterances,
            "empty_refs": self.empty_refs,
            "empty_refs_raw": self.empty_refs_raw,
            "normalizer": self.normalizer,
        }
        return out


def resolve_normalizer(
    language: str | None, normalizer: NormalizerKind | Normalizer, texts: Sequence[str] = ()
) -> Normalizer:
    """A ``Normalizer`` as is, or ``get_normalizer(language, normalizer)`` for a kind name.

    With ``language=None`` the kind is resolved from the scripts of ``texts`` (``normalizer_for_texts``): English
    only for Latin-script text, never Whisper's English normalizer on Arabic-script or other non-Latin text.
    """
    if isinstance(normalizer, Normalizer):
        return normalizer
    if language is None:
        from speechkit.text.scripts import normalizer_for_texts

        return normalizer_for_texts(texts, normalizer).normalizer
    return get_normalizer(language, normalizer)


def score_wer(
    refs: Sequence[str],
    hyps: Sequence[str],
    language: str | None = None,
    normalizer: NormalizerKind | Normalizer = "auto",
) -> WERReport:
    """Corpus WER and CER, raw (text as given, whitespace-split) and after the language's normalizer.

    Args:
        refs: reference transcripts.
        hyps: hypotheses, same length and order.
        language: language code choosing the normalizer (see ``speechkit.text.get_normalizer``); None: chosen from
            the text's script (Latin -> English, other scripts -> ``basic``; see ``speechkit.text.scripts``). The
            report's ``normalizer`` names the choice.
        normalizer: a kind (``auto`` | ``whisper_en`` | ``basic`` | ``none``) or a ``Normalizer``.

    Returns:
        A ``WERReport``; ``.to_dict()`` for JSON.
    """
    check_pairs(refs, hyps)
    normalize = resolve_normalizer(language, normalizer, [*refs, *hyps])
    norm_refs = [normalize(text) for text in refs]
    norm_hyps = [normalize(text) for text in hyps]
    return WERReport(
        words=edit_counts(norm_refs, norm_hyps, "word"),
        chars=edit_counts(norm_refs, norm_hyps, "char"),
        words_raw=edit_counts(refs, hyps, "word"),
        chars_raw=edit_counts(refs, hyps, "char"),
        utterances=len(refs),
        empty_refs=count_empty(norm_refs),
        empty_refs_raw=count_empty(refs),
        normalizer=normalize.name,
    )
