"""A character vocabulary for CTC: id 0 is the blank, then one id per character of an alphabet.

Text is prepared the same way for training targets and for scoring: lower-cased (when the alphabet has no upper
case), punctuation (Unicode category ``P*``) removed unless the alphabet has that character, whitespace collapsed to
single spaces. A remaining character outside the alphabet is an error naming it, never silently dropped.
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

from speechkit.errors import SpeechkitError

BLANK = 0
ENGLISH_ALPHABET = "abcdefghijklmnopqrstuvwxyz' "


class CharTokenizer:
    """``text <-> ids`` over ``alphabet`` (ids ``1..len(alphabet)``; 0 is the CTC blank).

    Args:
        alphabet: the characters, each once; include ``" "`` to keep word boundaries.
    """

    def __init__(self, alphabet: str = ENGLISH_ALPHABET) -> None:
        if not alphabet or len(set(alphabet)) != len(alphabet):
            raise SpeechkitError(f"alphabet: expected distinct characters, got {alphabet!r}")
        self.alphabet = alphabet
        self.index = {char: i + 1 for i, char in enumerate(alphabet)}
        self.lowercase = alphabet == alphabet.lower()

    def __len__(self) -> int:
        """Vocabulary size, the blank included."""
        return len(self.alphabet) + 1

    def normalize(self, text: str) -> str:
        """Lower-case (for a lower-case alphabet), punctuation out, whitespace collapsed."""
        text = text.lower() if self.lowercase else text
        kept = "".join(c for c in text if c in self.index or not unicodedata.category(c).startswith("P"))
        return " ".join(kept.split()) if " " in self.index else "".join(kept.split())

    def encode(self, text: str) -> list[int]:
        """Ids of ``normalize(text)``; a character outside the alphabet is an error naming it."""
        normalized = self.normalize(text)
        unknown = sorted({c for c in normalized if c not in self.index})
        if unknown:
            raise SpeechkitError(f"text {text[:60]!r}: characters {unknown} are not in the alphabet "
                                 f"{self.alphabet!r}; add them to the task's alphabet")
        return [self.index[c] for c in normalized]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of label ids (no blanks or repeats to collapse: see ``speechkit.models.ctc_decode``)."""
        return " ".join("".join(self.alphabet[i - 1] for i in ids if i != BLANK).split())
