"""Audio checks at import: each bad kind of file is named with its reason, good files of every format pass."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from lhotse import Recording

from speechkit.data.corpora.checks import audio_problems, screen_recordings, wav_promised_frames

REASONS = {
    "short": r"0\.010 s is shorter than min_duration 0\.1 s",
    "truncated": r"truncated: its header promises 1\.000 s \(8000 frames\), decoded 0\.060 s",
    "nan": r"1 non-finite samples",
    "silent": r"silent throughout",
}


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_each_bad_kind_is_named(kind: str, tmp_path: Path, write_bad_wav) -> None:
    recording = Recording.from_file(write_bad_wav(tmp_path / f"{kind}.wav", kind))
    problems = audio_problems(recording)
    assert len(problems) >= 1
    assert any(re.search(REASONS[kind], p) for p in problems), problems


def test_truncated_wav_looks_whole_to_libsndfile(tmp_path: Path, write_bad_wav) -> None:
    """Why the header is parsed by hand: libsndfile clips the frame count to the bytes present."""
    path = write_bad_wav(tmp_path / "t.wav", "truncated")
    assert soundfile.info(path).frames == 480 and Recording.from_file(path).duration == pytest.approx(0.06)
    assert wav_promised_frames(path) == 8000


def test_undecodable_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    soundfile.write(path, (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)
    recording = Recording.from_file(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # FLAC cut in the middle
    problems = audio_problems(recording)
    assert len(problems) == 1 and problems[0].startswith("cannot decode")


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg"])
def test_good_files_pass(suffix: str, tmp_path: Path, write_tone) -> None:
    recording = Recording.from_file(write_tone(tmp_path / f"tone{suffix}", 0.5, 16000))
    assert audio_problems(recording) == []


def test_min_duration_is_configurable_and_wav_without_size_passes(tmp_path: Path, write_tone) -> None:
    recording = Recording.from_file(write_tone(tmp_path / "tone.wav", 0.05, 8000))
    assert audio_problems(recording, min_duration=0.1) and audio_problems(recording, min_duration=0.0) == []
    streamed = tmp_path / "streamed.wav"  # a streaming writer's 0xFFFFFFFF data size promises nothing
    data = bytearray((tmp_path / "tone.wav").read_bytes())
    data[40:44] = b"\xff\xff\xff\xff"
    streamed.write_bytes(bytes(data))
    assert wav_promised_frames(streamed) is None


def test_screen_names_split_id_and_path(tmp_path: Path, write_bad_wav, write_tone) -> None:
    good = Recording.from_file(write_tone(tmp_path / "good.wav", 0.3, 8000))
    bad = Recording.from_file(write_bad_wav(tmp_path / "bad.wav", "silent"))
    [rejection] = screen_recordings("dev", [good, bad])
    assert (rejection.split, rejection.recording_id, rejection.path) == ("dev", "bad", str(tmp_path / "bad.wav"))
    assert "silent" in rejection.reason
