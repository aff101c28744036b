"""A word vocabulary for captions: ids 0-3 are ``<pad> <bos> <eos> <unk>``, then one id per word.

Captions are prepared the same way for training, scoring and the vocabulary: lower-cased, punctuation (Unicode
category ``P*``) removed except the apostrophe, whitespace collapsed. A word outside the vocabulary becomes
``<unk>`` (a test caption may use a word the training captions never did; its cross-entropy still counts it);
``unknown_words`` says which words those are, so they can be counted and reported.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from speechkit.errors import SpeechkitError

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)


def normalize_caption(text: str) -> str:
    """Lower case, punctuation out (apostrophes kept), whitespace collapsed."""
    kept = "".join(c for c in text.lower() if c == "'" or not unicodedata.category(c).startswith("P"))
    return " ".join(kept.split())


def build_vocabulary(texts: Iterable[str], min_count: int = 1) -> list[str]:
    """The words of ``texts`` seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
    counts = Counter(word for text in texts for word in normalize_caption(text).split())
    return sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))


def read_vocabulary(path: str | Path) -> list[str]:
    """One word a line (``build_vocabulary``'s output written out); blank lines are an error naming the line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line != line.strip():
            raise SpeechkitError(f"vocabulary {path}:{number}: expected one word without spaces, got {line!r}")
    return lines


class WordTokenizer:
    """``caption <-> ids`` over a word list (``<pad> <bos> <eos> <unk>`` first).

    Args:
        words: the vocabulary, each word once, none of them a special token.
    """

    def __init__(self, words: Sequence[str]) -> None:
        words = list(words)
        duplicates = sorted({w for w in words if words.count(w) > 1}) if len(set(words)) != len(words) else []
        clash = sorted(set(words) & set(SPECIALS))
        if not words or duplicates or clash or any(not w or " " in w for w in words):
            raise SpeechkitError(f"vocabulary: expected distinct non-empty words without spaces and none of "
                                 f"{SPECIALS}; duplicates {duplicates[:5]}, specials {clash}, {len(words)} words")
        self.words = list(SPECIALS) + words
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        """``[<bos>, word ids ..., <eos>]``; an unknown word is ``<unk>``; an empty caption is an error."""
        words = normalize_caption(text).split()
        if not words:
            raise SpeechkitError(f"caption {text!r} has no word")
        return [BOS] + [self.index.get(w, UNK) for w in words] + [EOS]

    def unknown_words(self, text: str) -> list[str]:
        """The words of ``text`` that ``encode`` maps to ``<unk>``."""
        return [w for w in normalize_caption(text).split() if w not in self.index]

    def decode(self, ids: Sequence[int]) -> str:
        """Words of ``ids`` up to the first ``<eos>``; ``<pad>`` and ``<bos>`` skipped."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.words[i])
        return " ".join(out)
