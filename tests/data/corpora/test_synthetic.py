"""The ``synthetic`` corpus: determinism, cache, splits, text files and bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from speechkit import cli
from speechkit.data.corpora import synthetic
from speechkit.data.corpora.base import manifest_path
from speechkit.errors import SpeechkitError


def manifests_text(out_dir: Path) -> str:
    """Every manifest's text with the output folder replaced (the manifests hold absolute audio paths)."""
    parts = [gzip.open(path, "rt").read() for path in sorted(out_dir.glob("*.jsonl.gz"))]
    return "".join(parts).replace(str(out_dir), "<out>")


def audio_bytes(out_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((out_dir / "audio").glob("*.flac"))}


def test_same_seed_gives_identical_audio_and_manifests(tmp_path: Path) -> None:
    options = dict(num_utterances=6, seed=5, speakers=3, dev_fraction=0.2, test_fraction=0.2)
    first = synthetic.prepare("numbers", tmp_path / "a", **options)
    synthetic.prepare("numbers", tmp_path / "b", **options)
    assert {split: len(cuts) for split, cuts in first.items()} == {"train": 4, "dev": 1, "test": 1}
    assert len(audio_bytes(tmp_path / "a")) == 6 and audio_bytes(tmp_path / "a") == audio_bytes(tmp_path / "b")
    assert manifests_text(tmp_path / "a") == manifests_text(tmp_path / "b")
    synthetic.prepare("numbers", tmp_path / "c", **(options | {"seed": 6}))
    assert audio_bytes(tmp_path / "c") != audio_bytes(tmp_path / "a")
    sup = first["train"][0].supervisions[0]
    assert sup.language == "en" and not any(ch.isdigit() for ch in sup.text) and sup.speaker.startswith("en+")


def test_second_run_reuses_the_audio(tmp_path: Path) -> None:
    synthetic.prepare("numbers", tmp_path, num_utterances=3, dev_fraction=0.0, test_fraction=0.0)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "audio").iterdir()}
    cuts = synthetic.prepare("numbers", tmp_path, num_utterances=3, dev_fraction=0.0, test_fraction=0.0)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "audio").iterdir()} == stamps
    assert list(cuts) == ["train"] and len(cuts["train"]) == 3


def test_text_file_keeps_duplicates_together(tmp_path: Path) -> None:
    lines = ["hello world", "", "good morning", "hello world", "see you", "thank you", "  "]
    (tmp_path / "lines.txt").write_text("\n".join(lines), encoding="utf-8")
    cuts = synthetic.prepare(
        tmp_path / "lines.txt", tmp_path / "out", speakers=2, dev_fraction=0.25, test_fraction=0.25
    )
    split_of = {c.supervisions[0].text: s for s, cs in cuts.items() for c in cs}
    texts = [c.supervisions[0].text for cs in cuts.values() for c in cs]
    assert sorted(texts) == sorted(line for line in lines if line.strip())  # nothing dropped but blank lines
    assert len(set(split_of.values())) == 3 and sum(len(cs) for cs in cuts.values()) == 5
    hello = [s for s, cs in cuts.items() for c in cs if c.supervisions[0].text == "hello world"]
    assert len(hello) == 2 and len(set(hello)) == 1
    assert manifest_path(tmp_path / "out", "cuts", "dev").is_file()


def test_other_language_numbers_are_digits(tmp_path: Path) -> None:
    cuts = synthetic.prepare("numbers", tmp_path, voice="de", num_utterances=2, dev_fraction=0.0, test_fraction=0.0)
    sups = [c.supervisions[0] for c in cuts["train"]]
    assert all(s.text.isdigit() and s.language == "de" and s.speaker.startswith("de+") for s in sups)


def test_number_words() -> None:
    expected = {
        0: "zero",
        13: "thirteen",
        40: "forty",
        312: "three hundred twelve",
        1000: "one thousand",
        100_001: "one hundred thousand one",
        999_999: "nine hundred ninety nine thousand nine hundred ninety nine",
    }
    assert {n: synthetic.number_words(n) for n in expected} == expected
    numbers = synthetic.draw_numbers(50, seed=1)
    assert len(set(numbers)) == 50 and numbers == synthetic.draw_numbers(50, seed=1)


def test_unknown_voice_fails_at_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status = cli.main(["prepare", "synthetic", "numbers", str(tmp_path), "--voice", "klingon"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(lines) == 1 and "klingon" in lines[0] and not (tmp_path / "audio").exists()


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(SpeechkitError, match="neither a text file"):
        synthetic.prepare(tmp_path / "missing.txt", tmp_path / "out")
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(SpeechkitError, match="no non-blank lines"):
        synthetic.prepare(tmp_path / "blank.txt", tmp_path / "out")
    with pytest.raises(SpeechkitError, match="dev_fraction"):
        synthetic.prepare("numbers", tmp_path / "out", num_utterances=3, dev_fraction=1.5)
