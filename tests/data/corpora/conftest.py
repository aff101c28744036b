"""Fixtures shared by the corpus importer tests: the real data folder, test tones, bad audio and FSDD-like folders."""

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


BAD_KINDS = ("short", "truncated", "nan", "silent", "garbage")


@pytest.fixture
def write_bad_wav(write_tone) -> Callable[[Path, str], Path]:
    """``write_bad_wav(path, kind)``: an 8 kHz wav that must not become a cut, ``kind`` one of ``BAD_KINDS``.

    short: 0.01 s; truncated: a 1 s wav with all but 0.06 s of its data chunk cut off (the header still promises
    1 s); nan: a float wav with one NaN; silent: 0.5 s of zeros; garbage: a RIFF header and nothing decodable.
    """

    def write(path: Path, kind: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "short":
            return write_tone(path, 0.01, 8000)
        if kind == "truncated":
            soundfile.write(path, np.full(8000, 0.2, np.float32), 8000, subtype="PCM_16")
            path.write_bytes(path.read_bytes()[: 44 + 2 * 480])  # 44-byte header + 480 16-bit frames
            return path
        if kind == "nan":
            samples = (0.2 * np.sin(np.arange(4000) / 3)).astype(np.float32)
            samples[100] = np.nan
            soundfile.write(path, samples, 8000, subtype="FLOAT")
            return path
        if kind == "silent":
            soundfile.write(path, np.zeros(4000, np.float32), 8000, subtype="PCM_16")
            return path
        if kind == "garbage":
            path.write_bytes(b"RIFF not really a wave file")
            return path
        raise ValueError(f"unknown kind {kind!r}; expected one of {BAD_KINDS}")

    return write


@pytest.fixture
def fsdd_like(write_tone) -> Callable[..., Path]:
    """``fsdd_like(root, speaker="alice", takes=(0, 5, 10, 11))``: ``root/recordings/{digit}_{speaker}_{take}.wav``
    tones (0.3 s, 8 kHz) for digit 1; takes 0-4 are test, 5-9 dev, the rest train."""

    def write(root: Path, speaker: str = "alice", takes: tuple[int, ...] = (0, 5, 10, 11)) -> Path:
        for take in takes:
            write_tone(root / "recordings" / f"1_{speaker}_{take}.wav", 0.3 + 0.01 * take, 8000)
        return root

    return write
