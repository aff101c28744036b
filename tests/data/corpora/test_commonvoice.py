"""``commonvoice`` on a tiny folder laid out like a Common Voice release (MP3 clips, TSVs with Lhotse's columns)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from speechkit.data.corpora import commonvoice
from speechkit.errors import SpeechkitError

HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
SENTENCES = {"train": ["سلام", "ښه راغلاست"], "dev": ["مننه"], "test": ["هو", "نه"]}


@pytest.fixture(autouse=True)
def scan_in_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lhotse scans CV audio in a spawned process pool (one per split, ~10 s start-up each on 2 busy cores);
    threads run the same per-clip code for these five clips."""
    import lhotse.recipes.commonvoice as recipe

    monkeypatch.setattr(recipe, "ProcessPoolExecutor", lambda max_workers, mp_context: ThreadPoolExecutor(max_workers))


@pytest.fixture
def cv_dir(tmp_path: Path, write_tone) -> Path:
    root, clip = tmp_path / "cv-corpus-20.0", 0
    for split, sentences in SENTENCES.items():
        rows = [HEADER]
        for sentence in sentences:
            name = f"common_voice_ps_{clip}.mp3"
            write_tone(root / "ps" / "clips" / name, 0.5 + 0.1 * clip, 16000, format="MP3")
            rows.append(f"spk{clip % 2}\t{name}\t{sentence}\t2\t0\ttwenties\tmale\t\t\tps\t")
            clip += 1
        (root / "ps" / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_import_keeps_every_clip(cv_dir: Path, tmp_path: Path) -> None:
    cuts = commonvoice.prepare(cv_dir, tmp_path / "out", languages=["ps"])
    assert {split: len(c) for split, c in cuts.items()} == {"train": 2, "dev": 1, "test": 2}
    cut = cuts["train"]["common_voice_ps_1"]
    sup = cut.supervisions[0]
    assert sup.text == "ښه راغلاست" and sup.language == "ps" and sup.speaker == "spk1"
    assert cut.recording.sampling_rate == 16000 and abs(cut.duration - 0.6) < 0.1
    assert (tmp_path / "out" / "cuts_test.jsonl.gz").is_file() and not list((tmp_path / "out").glob("cv-*"))


def test_languages_must_be_named(cv_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(SpeechkitError, match="languages explicitly"):
        commonvoice.prepare(cv_dir, tmp_path / "out", languages="auto")
    with pytest.raises(SpeechkitError, match="no language folder ur/"):
        commonvoice.prepare(cv_dir, tmp_path / "out", languages=["ur"])


def test_missing_clip_and_missing_column(cv_dir: Path, tmp_path: Path) -> None:
    (cv_dir / "ps" / "clips" / "common_voice_ps_2.mp3").unlink()
    with pytest.raises(SpeechkitError, match="common_voice_ps_2.mp3"):
        commonvoice.prepare(cv_dir, tmp_path / "out", languages=["ps"])
    tsv = cv_dir / "ps" / "dev.tsv"
    tsv.write_text(tsv.read_text().replace("\tvariant", "\tvariety"))
    with pytest.raises(SpeechkitError, match=r"dev.tsv lacks column\(s\) \['variant'\]"):
        commonvoice.prepare(cv_dir, tmp_path / "out", languages=["ps"])


def test_corrupt_clip_names_the_file(cv_dir: Path, tmp_path: Path) -> None:
    (cv_dir / "ps" / "clips" / "common_voice_ps_3.mp3").write_bytes(b"ID3 not audio")
    with pytest.raises(SpeechkitError, match="common_voice_ps_3.mp3"):
        commonvoice.prepare(cv_dir, tmp_path / "out", languages=["ps"], splits=["dev", "test"])
