"""CharTokenizer: blank at 0, normalization shared by targets and scoring, unknown characters named."""

from __future__ import annotations

import pytest

from speechkit.errors import SpeechkitError
from speechkit.text.characters import BLANK, CharTokenizer


def test_round_trip_and_normalization():
    tokenizer = CharTokenizer()
    assert len(tokenizer) == 29 and BLANK == 0
    ids = tokenizer.encode("  Three hundred, twelve!  It's ")
    assert tokenizer.decode(ids) == "three hundred twelve it's"
    assert BLANK not in ids and tokenizer.decode([0, *ids, 0]) == "three hundred twelve it's"


def test_alphabet_without_space_drops_word_boundaries():
    assert CharTokenizer("ab").decode(CharTokenizer("ab").encode("a b. B")) == "abb"


def test_unknown_characters_and_bad_alphabets_are_errors():
    with pytest.raises(SpeechkitError, match=r"characters \['3', 'é'\] are not in the alphabet"):
        CharTokenizer().encode("café 3")
    with pytest.raises(SpeechkitError, match="distinct"):
        CharTokenizer("aa")
