"""``musan`` on a tiny folder laid out like MUSAN (noise/<source>/*.wav): noise cuts for mixing."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechkit.data.corpora import musan
from speechkit.data.noise_mix import load_noise_cuts
from speechkit.errors import SpeechkitError


@pytest.fixture
def musan_dir(tmp_path: Path, write_tone) -> Path:
    root = tmp_path / "musan"
    for source, count in (("free-sound", 2), ("sound-bible", 1)):
        for n in range(count):
            write_tone(root / "noise" / source / f"noise-{source}-{n:04d}.wav", 1.0 + n)
    return root


def test_noise_part_becomes_noise_cuts(musan_dir: Path, tmp_path: Path) -> None:
    cuts = musan.prepare(musan_dir, tmp_path / "out")
    assert list(cuts) == ["noise"] and len(cuts["noise"]) == 3
    assert all(not cut.supervisions for cut in cuts["noise"])
    loaded = load_noise_cuts(tmp_path / "out" / "cuts_noise.jsonl.gz")
    assert sorted(round(c.duration, 3) for c in loaded) == [1.0, 1.0, 2.0]


def test_missing_part_is_an_error(musan_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SpeechkitError, match="has no .wav files"):
        musan.prepare(musan_dir, tmp_path / "out", parts=["music"])
