"""Text normalizers for scoring, chosen by language code.

Text normalization is the most common silent error in published WERs: Whisper's ``BasicTextNormalizer`` replaces
every combining mark with a space (splitting Indic and vowelled Arabic-script words) or, with
``remove_diacritics=True``, decomposes letters and drops the marks (Pashto ئ becomes ي, آ becomes ا). speechkit
therefore uses

* ``whisper_en``: Whisper's English normalizer, exactly as ``transformers`` ships it (English only);
* ``basic``: a script-preserving normalizer (NFC, lower case, punctuation and symbols to spaces, digits of every
  script to ASCII, whitespace collapsed) that keeps every letter and every combining mark, plus, for
  Arabic-script languages, removal of tatweel and vowel marks (harakat) *without* splitting the word and without
  merging distinct letters (Pashto ی/ي/ې/ۍ/ئ, ه/ۀ/ة stay distinct);
* ``none``: the identity.

``basic`` and ``none`` are idempotent: ``n(n(x)) == n(x)``. ``whisper_en`` is too on text, but not on digit
strings with a leading zero (``"zero one"`` -> ``"01"`` -> ``"one"``): it is used unchanged, for comparability with
published Whisper WERs, and scoring applies every normalizer exactly once.

Source of the Arabic-script rules: "Fine-tuning Whisper for Pashto ASR: strategies and scale" (Rahman, arXiv
2604.06507) reports WER on Pashto without naming its normalizer; the rules here are speechkit's own
choice, not the paper's. The hamza and madda marks U+0653-U+0655 are kept, because they form letters
(ئ = ي + U+0654) and dropping a stray one would merge letters.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Literal, Mapping

from speechkit.errors import SpeechkitError

NormalizerKind = Literal["auto", "whisper_en", "basic", "none"]
NORMALIZER_KINDS: tuple[str, ...] = ("auto", "whisper_en", "basic", "none")

# Languages written in Arabic script (ISO 639-1/-3): Arabic, Persian, Dari, Pashto, Urdu, Sindhi, Uyghur, Sorani
# Kurdish, Kashmiri, Balochi, Punjabi (Shahmukhi), Saraiki, South Azerbaijani.
ARABIC_SCRIPT_LANGUAGES: frozenset[str] = frozenset(
    {"ar", "fa", "prs", "ps", "ur", "sd", "ug", "ckb", "ks", "bal", "pnb", "skr", "azb"}
)
# Codes accepted besides Whisper's 100: the Arabic-script ones above and "mul" (any other language: basic rules).
EXTRA_LANGUAGES: frozenset[str] = ARABIC_SCRIPT_LANGUAGES | {"mul"}

# Arabic-script marks dropped by the Arabic-script normalizer (not replaced by a space): tatweel U+0640,
# harakat U+064B-U+0652 (tanwin, fatha, damma, kasra, shadda, sukun), U+0656-U+065F, superscript alef U+0670 and
# the Quranic annotation marks U+06D6-U+06ED of category Mn. Hamza/madda U+0653-U+0655 are kept (they form letters).
_ARABIC_DROPPED = re.compile(
    "[\u0640\u064b-\u0652\u0656-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed]"
)
# Annotation tags such as [noise], <unk>: removed, as Whisper's normalizers do (parentheses are kept as text).
_TAGS = re.compile(r"\[[^\]]*\]|<[^>]*>")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Normalizer:
    """A named text normalizer: ``normalizer(text) -> text``; ``name`` goes into every report. Picklable.

    Args:
        name: e.g. ``"basic[ps]"``, ``"whisper_en"``, ``"none"``.
        function: the string -> string function.
    """

    name: str
    function: Callable[[str], str] = field(repr=False)

    def __call__(self, text: str) -> str:
        return self.function(text)


def language_code(language: str) -> str:
    """Return the primary language code of ``language`` (``"ps-AF"``, ``"ps_af"``, ``"pashto"`` -> ``"ps"``).

    Args:
        language: an ISO 639 code, optionally with a region (``en-US``), or a Whisper language name.

    Raises:
        SpeechkitError: the code is neither one of Whisper's languages nor in ``EXTRA_LANGUAGES``.
    """
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    text = language.strip().lower()
    code = TO_LANGUAGE_CODE.get(text, re.split(r"[-_]", text)[0])
    if code not in LANGUAGES and code not in EXTRA_LANGUAGES:
        raise SpeechkitError(
            f"language={language!r}: unknown language code; expected one of Whisper's codes (en, de, hi, ps, ur ...),"
            f" an Arabic-script code ({', '.join(sorted(ARABIC_SCRIPT_LANGUAGES))}) or 'mul' for any other language"
        )
    return code


def _basic_char(char: str) -> str:
    """Map one character: punctuation, symbols, separators and controls -> space; any script's digit -> ASCII."""
    category = unicodedata.category(char)
    if category == "Nd":
        return str(unicodedata.decimal(char))
    if category[0] in "PSZ" or category == "Cc":
        return " "
    return char  # letters, combining marks (matras, virama, nukta), format characters such as ZWNJ


def basic_normalize(text: str, arabic_script: bool = False) -> str:
    """Script-preserving normalization: keeps every letter and mark, never splits a word at a combining mark.

    Steps: NFC, lower case, drop ``[tags]``/``<tags>``, (Arabic script: drop tatweel and harakat), punctuation /
    symbols / separators -> space, digits of every script -> ASCII, NFC again, collapse whitespace.

    Args:
        text: the transcript.
        arabic_script: also drop tatweel and vowel marks (harakat) as listed in ``_ARABIC_DROPPED``.

    Returns:
        The normalized text (idempotent).
    """
    text = _TAGS.sub(" ", unicodedata.normalize("NFC", text).lower())
    if arabic_script:
        text = _ARABIC_DROPPED.sub("", text)
    text = unicodedata.normalize("NFC", "".join(_basic_char(char) for char in text))
    return _SPACES.sub(" ", text).strip()


def load_english_spelling(source: Mapping[str, str] | str | Path | None) -> dict[str, str]:
    """Return the British -> American spelling mapping used by Whisper's English normalizer.

    Whisper ships it as ``normalizer.json`` in every Hugging Face Whisper checkpoint folder (``WhisperTokenizer``
    reads it from ``normalizer_file``); ``transformers`` itself does not ship it, so without one the mapping is empty
    and British spellings are not rewritten (``colour`` stays ``colour``).

    Args:
        source: a mapping, a ``normalizer.json`` path, a checkpoint folder holding one, or None (empty mapping).
    """
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    path = path / "normalizer.json" if path.is_dir() else path
    if not path.is_file():
        raise SpeechkitError(f"english_spelling={str(source)!r}: no such file (expected a Whisper normalizer.json)")
    mapping = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(mapping, dict):
        raise SpeechkitError(f"english_spelling={str(path)!r}: expected a JSON object word -> word")
    return mapping


def _identity(text: str) -> str:
    return text


def _strip_after(function: Callable[[str], str], text: str) -> str:
    return function(text).strip()


def whisper_english_normalizer(english_spelling: Mapping[str, str] | str | Path | None = None) -> Normalizer:
    """Whisper's English normalizer (``transformers`` ``EnglishTextNormalizer``): contractions, numbers, spellings.

    Args:
        english_spelling: see ``load_english_spelling``.
    """
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    mapping = load_english_spelling(english_spelling)
    name = f"whisper_en(spelling={len(mapping)})" if mapping else "whisper_en"
    return Normalizer(name, partial(_strip_after, EnglishTextNormalizer(mapping)))


def get_normalizer(
    language: str,
    kind: NormalizerKind = "auto",
    english_spelling: Mapping[str, str] | str | Path | None = None,
) -> Normalizer:
    """Return the normalizer for ``language``.

    ``auto`` is Whisper's English normalizer for English and ``basic`` (with its Arabic-script rules where the
    language is written in Arabic script) for every other language.

    Args:
        language: language code (``en``, ``ps``, ``hi``, ``ps-AF``, a Whisper language name, or ``mul``).
        kind: ``auto`` | ``whisper_en`` | ``basic`` | ``none``.
        english_spelling: spelling mapping for ``whisper_en`` (see ``load_english_spelling``).

    Raises:
        SpeechkitError: unknown language or kind, or ``whisper_en`` asked for a language other than English.
    """
    code = language_code(language)
    if kind not in NORMALIZER_KINDS:
        raise SpeechkitError(f"normalizer={kind!r}: expected one of {', '.join(NORMALIZER_KINDS)}")
    if kind == "none":
        return Normalizer("none", _identity)
    if kind == "whisper_en" or (kind == "auto" and code == "en"):
        if code != "en":
            raise SpeechkitError(
                f"normalizer='whisper_en' with language={language!r}: Whisper's English normalizer drops the marks "
                "and rewrites the letters of other languages; use 'basic' (or 'auto')"
            )
        return whisper_english_normalizer(english_spelling)
    arabic = code in ARABIC_SCRIPT_LANGUAGES
    return Normalizer(f"basic[{code}]", partial(basic_normalize, arabic_script=arabic))
