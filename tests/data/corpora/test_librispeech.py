"""``librispeech`` on a tiny folder laid out like LibriSpeech (part/speaker/chapter, FLAC + trans.txt)."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechkit.data.corpora import librispeech
from speechkit.errors import SpeechkitError


@pytest.fixture
def libri_dir(tmp_path: Path, write_tone) -> Path:
    root = tmp_path / "LibriSpeech"
    for part, speaker, chapter, count in (("dev-clean", 84, 121123, 2), ("test-clean", 1089, 134686, 1)):
        folder = root / part / str(speaker) / str(chapter)
        lines = []
        for utt in range(count):
            uid = f"{speaker}-{chapter}-{utt:04d}"
            write_tone(folder / f"{uid}.flac", 0.4 + 0.2 * utt)
            lines.append(f"{uid} GO DO YOU HEAR {utt}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_parts_become_splits(libri_dir: Path, tmp_path: Path) -> None:
    cuts = librispeech.prepare(libri_dir, tmp_path / "out")
    assert {split: len(c) for split, c in cuts.items()} == {"dev-clean": 2, "test-clean": 1}
    cut = cuts["dev-clean"]["84-121123-0001"]
    assert cut.supervisions[0].text == "GO DO YOU HEAR 1" and cut.supervisions[0].speaker == "84"
    assert cut.supervisions[0].language == "en" and abs(cut.duration - 0.6) < 1e-6
    assert (tmp_path / "out" / "cuts_dev-clean.jsonl.gz").is_file()
    assert list(librispeech.prepare(libri_dir, tmp_path / "out2", parts=["test-clean"])) == ["test-clean"]


def test_missing_flac_and_wrong_folder(libri_dir: Path, tmp_path: Path) -> None:
    (libri_dir / "dev-clean" / "84" / "121123" / "84-121123-0000.flac").unlink()
    with pytest.raises(SpeechkitError, match="84-121123-0000.flac"):
        librispeech.prepare(libri_dir, tmp_path / "out")
    with pytest.raises(SpeechkitError, match="is not LibriSpeech"):
        librispeech.prepare(libri_dir / "dev-clean", tmp_path / "out")
    with pytest.raises(SpeechkitError, match="unknown part 'dev-dirty'"):
        librispeech.prepare(libri_dir, tmp_path / "out", parts=["dev-dirty"])


def test_corrupt_flac_names_the_file(libri_dir: Path, tmp_path: Path) -> None:
    (libri_dir / "test-clean" / "1089" / "134686" / "1089-134686-0000.flac").write_bytes(b"fLaC garbage")
    with pytest.raises(SpeechkitError, match="1089-134686-0000.flac"):
        librispeech.prepare(libri_dir, tmp_path / "out", parts=["test-clean"])


def test_bad_audio_is_refused_or_skipped(libri_dir: Path, tmp_path: Path, write_tone) -> None:
    short = write_tone(libri_dir / "dev-clean" / "84" / "121123" / "84-121123-0001.flac", 0.01)
    with pytest.raises(SpeechkitError, match=r"84-121123-0001\.flac: 0\.010 s is shorter than min_duration 0\.1 s"):
        librispeech.prepare(libri_dir, tmp_path / "out")
    cuts = librispeech.prepare(libri_dir, tmp_path / "out", skip_bad=True)
    assert [c.id for c in cuts["dev-clean"]] == ["84-121123-0000"]
    assert str(short) in (tmp_path / "out" / "rejected.jsonl").read_text()


def test_upper_case_flac_is_named(libri_dir: Path, tmp_path: Path) -> None:
    folder = libri_dir / "test-clean" / "1089" / "134686"
    (folder / "1089-134686-0000.flac").rename(folder / "1089-134686-0000.FLAC")
    with pytest.raises(SpeechkitError, match=r"1089-134686-0000\.FLAC is there, but Lhotse's recipe reads only"):
        librispeech.prepare(libri_dir, tmp_path / "out")
