"""Fixtures shared by the corpus importer tests: the real data folder and a writer of short test tones."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$SPEECHKIT_DATA`` or ``<repo>/../shared/data``: the small real corpora."""
    root = Path(os.environ.get("SPEECHKIT_DATA", Path(__file__).resolve().parents[3].parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"real corpora not found at {root} (set SPEECHKIT_DATA)")
    return root


@pytest.fixture
def write_tone() -> Callable[..., Path]:
    """``write_tone(path, seconds, sample_rate=16000, format=None)``: a sine tone file (format from the suffix)."""

    def write(path: Path, seconds: float, sample_rate: int = 16000, format: str | None = None) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(seconds * sample_rate)) / sample_rate
        soundfile.write(path, (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate, format=format)
        return path

    return write
