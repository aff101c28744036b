"""FSDD import on the real corpus and the bad inputs of ``speechkit prepare``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from lhotse import load_manifest

from speechkit import cli
from speechkit.data.corpora.base import manifest_path
from speechkit.data.corpora import fsdd
from speechkit.errors import SpeechkitError
from speechkit.progress import message_lines


@pytest.fixture(scope="module")
def fsdd_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fsdd")


@pytest.fixture(scope="module")
def fsdd_cuts(data_dir: Path, fsdd_out: Path) -> dict:
    return fsdd.prepare(data_dir / "fsdd", fsdd_out)


def test_fsdd_counts_and_ids(fsdd_cuts: dict) -> None:
    assert {split: len(cuts) for split, cuts in fsdd_cuts.items()} == {"train": 2400, "dev": 300, "test": 300}
    every = [cut for cuts in fsdd_cuts.values() for cut in cuts]
    assert len({cut.id for cut in every}) == 3000
    assert len({cut.supervisions[0].speaker for cut in every}) == 6
    cut = fsdd_cuts["test"]["7_jackson_3"]  # take 3 -> test
    assert cut.supervisions[0].id == cut.id and cut.supervisions[0].text == "seven"
    assert cut.recording.sampling_rate == 8000
    assert "7_jackson_12" in fsdd_cuts["train"] and "7_jackson_7" in fsdd_cuts["dev"]


def test_manifests_on_disk_match(fsdd_cuts: dict, fsdd_out: Path) -> None:
    for split, cuts in fsdd_cuts.items():
        for kind in ("recordings", "supervisions", "cuts"):
            assert len(load_manifest(manifest_path(fsdd_out, kind, split))) == len(cuts)
    assert load_manifest(manifest_path(fsdd_out, "cuts", "test"))["7_jackson_3"].supervisions[0].text == "seven"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    status = cli.main(argv)
    return status, message_lines(capsys.readouterr().err)


def test_missing_source_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, lines = run_cli(["prepare", "fsdd", "/no/such/dir", str(tmp_path / "x")], capsys)
    assert status != 0 and len(lines) == 1 and "/no/such/dir" in lines[0]


def test_unknown_corpus(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    status, lines = run_cli(["prepare", "nosuchcorpus", str(tmp_path), str(tmp_path / "x")], capsys)
    assert status != 0 and len(lines) == 1 and "nosuchcorpus" in lines[0] and "fsdd" in lines[0]


def test_folder_that_is_not_fsdd(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(SpeechkitError, match=str(tmp_path)):
        fsdd.prepare(tmp_path, tmp_path / "out")


def test_corrupt_audio_names_the_file(tmp_path: Path, write_tone) -> None:
    write_tone(tmp_path / "recordings" / "1_alice_20.wav", 0.3, 8000)
    (tmp_path / "recordings" / "2_alice_21.wav").write_bytes(b"RIFF not really a wave file")
    with pytest.raises(SpeechkitError, match="2_alice_21.wav"):
        fsdd.prepare(tmp_path, tmp_path / "out")


def test_unexpected_file_name(tmp_path: Path, write_tone) -> None:
    write_tone(tmp_path / "recordings" / "seven.wav", 0.3, 8000)
    with pytest.raises(SpeechkitError, match="seven.wav"):
        fsdd.prepare(tmp_path, tmp_path / "out")


def test_upper_case_extension_is_imported(
    tmp_path: Path, fsdd_like, write_tone, caplog: pytest.LogCaptureFixture
) -> None:
    # `*.WAV` files were skipped silently.
    source = fsdd_like(tmp_path / "A")
    write_tone(source / "recordings" / "2_alice_30.WAV", 0.4, 8000)
    (source / "recordings" / "NOTES.txt").write_text("not audio")
    with caplog.at_level(logging.INFO):
        cuts = fsdd.prepare(source, tmp_path / "out")
    assert "2_alice_30" in cuts["train"] and len(cuts["train"]) == 3
    assert "ignored 1 file(s)" in caplog.text and "NOTES.txt" in caplog.text
    write_tone(source / "recordings" / "2_alice_30.wav", 0.4, 8000)
    with pytest.raises(SpeechkitError, match=r"2_alice_30\.WAV and .*2_alice_30\.wav are the same recording"):
        fsdd.prepare(source, tmp_path / "out2")


def test_the_real_corpus_passes_the_audio_checks(fsdd_out: Path, fsdd_cuts: dict) -> None:
    assert json.loads((fsdd_out / "prepare.json").read_text())["rejected"] == 0
    assert all(Path(c.recording.sources[0].source).is_absolute() for cuts in fsdd_cuts.values() for c in cuts)
