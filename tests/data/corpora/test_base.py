"""The atomic write of a corpus, the refusal to replace a different one, ``--skip-bad`` and absolute audio paths.

FSDD-like folders of tones carry the importer through ``speechkit prepare``; the behaviour under test is
``base.write_corpus`` / ``base.open_target``, which every importer shares.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest
from lhotse import CutSet, Recording, RecordingSet, SupervisionSet, load_manifest

from speechkit import cli
from speechkit.data.corpora import base, fsdd
from speechkit.errors import SpeechkitError
from speechkit.progress import message_lines


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(folder: Path) -> list[str]:
    """Names beside ``folder`` in its parent (a temporary folder left behind would show here)."""
    return sorted(p.name for p in folder.parent.iterdir())


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    status = cli.main(argv)
    return status, message_lines(capsys.readouterr().err)


@pytest.fixture
def corpus_a(tmp_path: Path, fsdd_like) -> tuple[Path, Path]:
    """(source A, out) with A prepared into ``tmp_path/work/out``."""
    source, out = fsdd_like(tmp_path / "A"), tmp_path / "work" / "out"
    fsdd.prepare(source, out)
    return source, out


def test_failed_prepare_leaves_the_previous_corpus_untouched(
    corpus_a: tuple[Path, Path], tmp_path: Path, fsdd_like, capsys: pytest.CaptureFixture
) -> None:
    # Defect 3: B has train takes only, so its dev split fails after its train split was written over A's.
    _, out = corpus_a
    before = snapshot(out)
    source_b = fsdd_like(tmp_path / "B", speaker="bob", takes=(10, 11, 12))
    status, lines = run_cli(["prepare", "fsdd", str(source_b), str(out)], capsys)
    assert snapshot(out) == before
    assert status == 2 and len(lines) == 1 and "--overwrite" in lines[0] and str(source_b) in lines[0]
    status, lines = run_cli(["prepare", "fsdd", str(source_b), str(out), "--overwrite"], capsys)
    assert snapshot(out) == before and siblings(out) == ["out"]
    assert status == 2 and len(lines) == 1 and "'dev' has no recordings" in lines[0]


def test_bad_audio_in_a_replacement_leaves_the_old_corpus(
    corpus_a: tuple[Path, Path], tmp_path: Path, fsdd_like, write_bad_wav
) -> None:
    _, out = corpus_a
    before = snapshot(out)
    source_b = fsdd_like(tmp_path / "B")
    write_bad_wav(source_b / "recordings" / "2_alice_30.wav", "truncated")
    with pytest.raises(SpeechkitError, match=r"2_alice_30\.wav: truncated"):
        fsdd.prepare(source_b, out, overwrite=True)
    assert snapshot(out) == before and siblings(out) == ["out"]


def test_full_disk_while_writing_leaves_the_old_corpus(
    corpus_a: tuple[Path, Path], tmp_path: Path, fsdd_like, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out = corpus_a
    before = snapshot(out)
    real_to_file = CutSet.to_file

    def fill_the_disk(cuts: CutSet, path) -> None:
        if "test" in str(path):  # train and dev are written by then
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_to_file(cuts, path)

    monkeypatch.setattr(CutSet, "to_file", fill_the_disk)
    with pytest.raises(SpeechkitError, match=r"writing .*out failed, it is unchanged: .*No space left on device"):
        fsdd.prepare(fsdd_like(tmp_path / "B", speaker="bob"), out, overwrite=True)
    assert snapshot(out) == before and siblings(out) == ["out"]


def test_new_out_dir_appears_whole_or_not_at_all(
    tmp_path: Path, fsdd_like, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "fresh" / "out"
    with pytest.raises(SpeechkitError, match=r"fsdd: split 'dev' has no recordings in .*B"):
        fsdd.prepare(fsdd_like(tmp_path / "B", takes=(10, 11)), out)
    assert not out.parent.exists()  # refused before anything was created
    with monkeypatch.context() as patch:
        patch.setattr(CutSet, "to_file", lambda cuts, path: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        with pytest.raises(SpeechkitError, match="unchanged"):
            fsdd.prepare(fsdd_like(tmp_path / "A"), out)
    assert siblings(out) == []  # neither out nor a temporary folder beside it
    cuts = fsdd.prepare(fsdd_like(tmp_path / "A"), out)
    assert {split: len(c) for split, c in cuts.items()} == {"train": 2, "dev": 1, "test": 1}
    assert (out.stat().st_mode & 0o777) == 0o777 & ~_umask()  # not the private mode of a temporary folder


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_same_command_reruns_and_overwrite_replaces_only_the_corpus(
    corpus_a: tuple[Path, Path], tmp_path: Path, fsdd_like
) -> None:
    source_a, out = corpus_a
    fsdd.prepare(source_a, out)  # the same command again: no flag needed
    (out / "notes.txt").write_text("mine")
    (out / "audio").mkdir()
    (out / "audio" / "keep.flac").write_bytes(b"cache")
    (out / "cuts_extra.jsonl.gz").write_bytes((out / "cuts_dev.jsonl.gz").read_bytes())  # a split A no longer has
    source_b = fsdd_like(tmp_path / "B", speaker="bob")
    with pytest.raises(SpeechkitError, match=rf"different corpus \(source: {source_a} -> {source_b}\).*--overwrite"):
        fsdd.prepare(source_b, out)
    with pytest.raises(SpeechkitError, match=r"option min_duration: 0\.1 -> 0\.2"):
        fsdd.prepare(source_a, out, min_duration=0.2)
    cuts = fsdd.prepare(source_b, out, overwrite=True)
    assert {c.supervisions[0].speaker for cs in cuts.values() for c in cs} == {"bob"}
    assert (out / "notes.txt").read_text() == "mine" and (out / "audio" / "keep.flac").read_bytes() == b"cache"
    assert not (out / "cuts_extra.jsonl.gz").exists()
    assert json.loads((out / "prepare.json").read_text())["source"] == str(source_b)
    assert {c.id for c in load_manifest(out / "cuts_train.jsonl.gz")} == {"1_bob_10", "1_bob_11"}


def test_manifests_of_unknown_origin_need_overwrite(tmp_path: Path, fsdd_like) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "cuts_train.jsonl.gz").write_bytes(b"written by hand")
    with pytest.raises(SpeechkitError, match=r"cuts_train\.jsonl\.gz .*no readable prepare\.json.*--overwrite"):
        fsdd.prepare(fsdd_like(tmp_path / "A"), out)
    fsdd.prepare(fsdd_like(tmp_path / "A"), out, overwrite=True)
    assert len(load_manifest(out / "cuts_train.jsonl.gz")) == 2


def test_an_out_dir_with_other_files_only_is_fine(tmp_path: Path, fsdd_like) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README").write_text("my corpus")
    fsdd.prepare(fsdd_like(tmp_path / "A"), out)
    assert (out / "README").read_text() == "my corpus" and (out / "cuts_dev.jsonl.gz").is_file()


def test_bad_audio_is_refused_naming_the_file(tmp_path: Path, fsdd_like, write_bad_wav, capsys) -> None:
    source = fsdd_like(tmp_path / "A")
    write_bad_wav(source / "recordings" / "3_alice_20.wav", "nan")
    write_bad_wav(source / "recordings" / "4_alice_21.wav", "silent")
    status, lines = run_cli(["prepare", "fsdd", str(source), str(tmp_path / "out")], capsys)
    assert status == 2 and len(lines) == 1
    assert "3_alice_20.wav: 1 non-finite samples" in lines[0] and "and 1 more" in lines[0] and "--skip-bad" in lines[0]
    assert not (tmp_path / "out").exists()


def test_skip_bad_reports_every_file_and_reason(
    tmp_path: Path, fsdd_like, write_bad_wav, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    source, out = fsdd_like(tmp_path / "A"), tmp_path / "out"
    expected = {}
    for number, kind in enumerate(("short", "truncated", "nan", "silent", "garbage")):
        path = write_bad_wav(source / "recordings" / f"{number}_alice_{20 + number}.wav", kind)
        expected[path.stem] = (str(path), kind)
    with caplog.at_level(logging.WARNING):
        status = cli.main(["prepare", "fsdd", str(source), str(out), "--skip-bad"])
    assert status == 0 and "skipped 5 bad recording(s)" in caplog.text and str(out / "rejected.jsonl") in caplog.text
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert {r["recording_id"]: r["path"] for r in rejected} == {k: v[0] for k, v in expected.items()}
    reasons = {r["recording_id"]: r["reason"] for r in rejected}
    assert "shorter than min_duration" in reasons["0_alice_20"] and "truncated" in reasons["1_alice_21"]
    assert "non-finite" in reasons["2_alice_22"] and "silent" in reasons["3_alice_23"]
    assert "cannot read its header" in reasons["4_alice_24"]
    assert {r["split"] for r in rejected} == {"train"}
    assert {c.id for c in load_manifest(out / "cuts_train.jsonl.gz")} == {"1_alice_10", "1_alice_11"}
    assert json.loads((out / "prepare.json").read_text())["rejected"] == 5
    assert "train: 2 cuts" in capsys.readouterr().out


def test_skip_bad_with_nothing_bad_writes_an_empty_list(tmp_path: Path, fsdd_like) -> None:
    fsdd.prepare(fsdd_like(tmp_path / "A"), tmp_path / "out", skip_bad=True)
    assert (tmp_path / "out" / "rejected.jsonl").read_text() == ""


def test_write_split_stores_absolute_paths(tmp_path: Path, write_tone, monkeypatch: pytest.MonkeyPatch) -> None:
    # Defect 8, for every importer: a recording read from a relative path is stored with an absolute one.
    monkeypatch.chdir(tmp_path)
    write_tone(tmp_path / "audio" / "a.wav", 0.3)
    recording = Recording.from_file("audio/a.wav")
    assert recording.sources[0].source == "audio/a.wav"
    sup = base.whole_recording_supervision(recording, "a", "en", "s")
    base.write_split("out", "train", RecordingSet.from_recordings([recording]), SupervisionSet.from_segments([sup]))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cut = load_manifest(tmp_path / "out" / "cuts_train.jsonl.gz")[0]
    assert cut.recording.sources[0].source == str(tmp_path / "audio" / "a.wav") and cut.load_audio().shape[1] > 0


def test_relative_source_and_out_dir(tmp_path: Path, fsdd_like, monkeypatch: pytest.MonkeyPatch) -> None:
    fsdd_like(tmp_path / "A")
    monkeypatch.chdir(tmp_path)
    fsdd.prepare("A", "out")
    fsdd.prepare("A", str(tmp_path / "out"))  # the same corpus, named absolutely: still the same command
    monkeypatch.chdir(tmp_path / "A")
    for cut in load_manifest(tmp_path / "out" / "cuts_train.jsonl.gz"):
        assert Path(cut.recording.sources[0].source).is_absolute() and cut.load_audio().size > 0


def test_a_read_only_parent_fails_before_the_work(
    tmp_path: Path, fsdd_like, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    monkeypatch.setattr(fsdd, "wav_files", lambda folder: pytest.fail("the audio was read before the check"))
    with pytest.raises(SpeechkitError, match=rf"cannot write {locked}/new/out: {locked} is not writable"):
        fsdd.prepare(fsdd_like(tmp_path / "A"), locked / "new" / "out")
