"""The ``synthetic`` corpus: determinism, cache, splits, text files and bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from lhotse import load_manifest

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


def test_bom_is_not_part_of_the_first_transcript(tmp_path: Path) -> None:
    (tmp_path / "bom.txt").write_bytes("\ufeffhello world\ngood morning\n".encode("utf-8"))
    cuts = synthetic.prepare(tmp_path / "bom.txt", tmp_path / "out", speakers=1, dev_fraction=0.0, test_fraction=0.0)
    assert sorted(c.supervisions[0].text for c in cuts["train"]) == ["good morning", "hello world"]


def test_lines_without_letters_or_too_long_are_refused_by_number(tmp_path: Path, capsys) -> None:
    lines = ["hello world", "...", "good morning", "?!", "word " * 400, "see you"]
    (tmp_path / "lines.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SpeechkitError, match=r"line\(s\) 2, 4 have no letter or digit; line\(s\) 5 is longer than "
                                             r"max_chars=400 \(up to 1999 characters"):
        synthetic.prepare(tmp_path / "lines.txt", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was synthesized
    status = cli.main(["prepare", "synthetic", str(tmp_path / "lines.txt"), str(tmp_path / "out"), "--max-chars", "5"])
    lines_out = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines_out) == 1 and "line(s) 1, 3, 5, 6 are longer than max_chars=5" in lines_out[0]


def test_other_scripts_and_digits_are_speakable(tmp_path: Path) -> None:
    texts = [("1", "сәлем"), ("2", "سلام"), ("3", "312"), ("4", "« — »")]
    assert synthetic.text_problems(texts) == ["4 has no letter or digit"]


def test_relative_out_dir_gives_absolute_audio_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Defect 8: the manifests held "out/audio/<hash>.flac", unreadable from any other working directory.
    monkeypatch.chdir(tmp_path)
    synthetic.prepare("numbers", "out", num_utterances=2, speakers=1, dev_fraction=0.0, test_fraction=0.0)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    for cut in load_manifest(tmp_path / "out" / "cuts_train.jsonl.gz"):
        source = cut.recording.sources[0].source
        assert source.startswith(str(tmp_path / "out" / "audio")) and cut.load_audio().shape[1] > 1000


def test_a_different_corpus_is_refused_before_synthesis(tmp_path: Path) -> None:
    synthetic.prepare("numbers", tmp_path, num_utterances=2, speakers=1, dev_fraction=0.0, test_fraction=0.0)
    before = sorted(p.name for p in (tmp_path / "audio").iterdir())
    with pytest.raises(SpeechkitError, match=r"different corpus \(option seed: 0 -> 1\).*--overwrite"):
        synthetic.prepare(
            "numbers", tmp_path, num_utterances=2, speakers=1, dev_fraction=0.0, test_fraction=0.0, seed=1
        )
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == before


def test_test_speakers_speak_only_the_test_split_and_train_is_unchanged(tmp_path: Path) -> None:
    """Issue 22: ``--test_speakers`` gives a test split of unseen speakers and unseen texts; the other splits keep the
    speakers and audio they had without the option (the first ``speakers - test_speakers`` styles are the same)."""
    options = dict(num_utterances=16, seed=3, dev_fraction=0.125, test_fraction=0.25)
    plain = synthetic.prepare("numbers", tmp_path / "plain", speakers=2, **options)
    disjoint = synthetic.prepare("numbers", tmp_path / "disjoint", speakers=4, test_speakers=2, **options)
    speakers = {split: {c.supervisions[0].speaker for c in cuts} for split, cuts in disjoint.items()}
    assert speakers["test"] and not speakers["test"] & (speakers["train"] | speakers["dev"])
    texts = {split: {c.supervisions[0].text for c in cuts} for split, cuts in disjoint.items()}
    assert not texts["test"] & (texts["train"] | texts["dev"])
    for split in ("train", "dev"):
        assert [c.supervisions[0].speaker for c in disjoint[split]] == [c.supervisions[0].speaker for c in plain[split]]
    with pytest.raises(SpeechkitError, match="test_speakers < speakers"):
        synthetic.prepare("numbers", tmp_path / "bad", speakers=2, test_speakers=2, **options)


def test_spoken_column_is_read_and_the_transcript_kept(tmp_path: Path) -> None:
    """A line ``transcript<TAB>spoken form``: eSpeak reads the respelling, the manifest keeps the transcript and the
    given language (Urdu voice reading Pashto: ټ and ړ are not Urdu letters, ٹ and ڑ are)."""
    source = tmp_path / "ps.tsv"
    source.write_text("شپاړس\tشپاڑس\nټول\tٹول\nشپاړس ټول\tشپاڑس ٹول\n", encoding="utf-8")
    cuts = synthetic.prepare(source, tmp_path / "out", voice="ur", language="ps", speakers=1, dev_fraction=0,
                             test_fraction=0)
    sups = [c.supervisions[0] for c in cuts["train"]]
    assert sorted(s.text for s in sups) == sorted(["شپاړس", "ټول", "شپاړس ټول"])
    assert {s.language for s in sups} == {"ps"}
    respelled = synthetic.Synthesizer().synthesize("ٹول", voice="ur", **_style_of(sups, "ټول"))
    spoken = next(c for c in cuts["train"] if c.supervisions[0].text == "ټول").load_audio()
    assert abs(spoken.shape[-1] / 16000 - respelled.shape[-1] / 22050) < 0.01  # the audio is the respelling's
    with pytest.raises(SpeechkitError, match="both columns"):
        synthetic.split_spoken("ټول\t")


def _style_of(sups, text: str) -> dict:
    """rate/pitch/pitch_range/variant of the speaker that read ``text`` (from its name ``ur+m3_r160_p45_g50``)."""
    name = next(s.speaker for s in sups if s.text == text)
    voice_variant, rate, pitch, prange = name.split("_")
    return dict(variant=voice_variant.partition("+")[2], rate=int(rate[1:]), pitch=int(pitch[1:]),
                pitch_range=int(prange[1:]))
