"""Which writing system a text is in, for choosing a normalizer when no language is given.

Scoring Arabic-script (or any non-Latin) text with Whisper's English normalizer is a silent error: it decomposes
letters and drops their marks (Pashto ئ becomes ي). When the language is not given, ``normalizer_for_texts`` looks at
the letters: Latin only -> English (``whisper_en``, the long-standing default); any letter of another script ->
the script-preserving ``basic`` normalizer, with the Arabic-script rules when Arabic letters are present. Every
Arabic-script language gets the same ``basic`` rules (see ``normalizers.get_normalizer``), so the detected choice
scores exactly as ``--language ps`` / ``ur`` / ``fa`` would.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import Iterable

from speechkit.text.normalizers import Normalizer, NormalizerKind, basic_normalize, get_normalizer

# Words that start the Unicode names of letters but are not script names.
_NOT_SCRIPTS = frozenset({"FULLWIDTH", "HALFWIDTH", "SMALL", "CAPITAL", "LETTER", "MATHEMATICAL"})


def letter_script(char: str) -> str:
    """Script of one letter: ``'LATIN'``, ``'ARABIC'``, ``'DEVANAGARI'``, ``'CJK'`` ... (from its Unicode name)."""
    code = ord(char)
    name = unicodedata.name(char, "")
    if code < 0x250 or 0x1E00 <= code <= 0x1EFF or "LATIN" in name.split():  # Latin-1, Extended-A/B, Additional
        return "LATIN"
    words = [word for word in name.split() if word not in _NOT_SCRIPTS]
    return words[0] if words else "UNKNOWN"


def letter_scripts(texts: Iterable[str]) -> Counter[str]:
    """Number of letters per script over all ``texts`` (modifier letters such as ʼ belong to no script)."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(letter_script(char) for char in text if char.isalpha() and unicodedata.category(char) != "Lm")
    return counts


@dataclass(frozen=True)
class ScriptChoice:
    """The normalizer chosen from the text's letters, the language code for error analysis, and why (one line)."""

    normalizer: Normalizer
    language: str
    reason: str


def _describe(counts: Counter[str]) -> str:
    total = sum(counts.values())
    shown = ", ".join(f"{script.title()} {100 * count / total:.0f} %" for script, count in counts.most_common(3))
    return f"{total} letters: {shown}"


def normalizer_for_texts(texts: Iterable[str], kind: NormalizerKind = "auto") -> ScriptChoice:
    """Choose the normalizer for texts of an unnamed language from their scripts.

    Args:
        texts: the references and hypotheses.
        kind: ``auto`` (by script, as above), ``basic`` (with Arabic-script rules when Arabic letters are present),
            ``whisper_en`` or ``none`` (as asked, whatever the script).

    Returns:
        A ``ScriptChoice``; its ``reason`` says what was seen and what was chosen, for the user to read.
    """
    counts = letter_scripts(texts)
    non_latin = {script: count for script, count in counts.items() if script != "LATIN"}
    seen = _describe(counts) if counts else "no letters"
    if kind in ("none", "whisper_en") or (kind == "auto" and not non_latin):
        normalizer = get_normalizer("en", kind)
        return ScriptChoice(normalizer, "en", f"no language given; {seen}: scored as English ({normalizer.name})")
    arabic = "ARABIC" in non_latin
    name = "basic[arabic script]" if arabic else "basic[mul]"
    normalizer = Normalizer(name, partial(basic_normalize, arabic_script=arabic))
    return ScriptChoice(normalizer, "mul", f"no language given; {seen}: not English, normalizer {name}")
