"""speechkit.inference.inputs: files, folders (recursive, any-case extensions), manifests, failures listed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechkit.errors import SpeechkitError
from speechkit.inference.inputs import collect_inputs, load_waveform
from speechkit.testing import tone_corpus


def tone(path: Path, seconds: float = 0.5, rate: int = 8000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.stack([audio] * channels, axis=1) if channels > 1 else audio, rate)
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "audio"
    tone(root / "a.wav", 0.5)
    tone(root / "sub" / "deeper" / "B.WAV", 1.0)  # upper-case extension, two levels down
    tone(root / "sub" / "c.Flac", 0.25)
    (root / "notes.txt").write_text("not audio")
    (root / "sub" / "readme").write_text("no extension")
    (root / "sub" / "broken.wav").write_text("text pretending to be a wav")
    return root


def test_a_folder_is_searched_recursively_with_any_case_extension(folder):
    found = collect_inputs([str(folder)])
    assert [item.id for item in found.items] == ["a", "sub/c", "sub/deeper/B"]
    assert [round(item.duration, 3) for item in found.items] == [0.5, 0.25, 1.0]
    assert found.not_audio == {".txt": 1, "": 1}  # counted and reported, not read
    assert "2 files in the folders given whose extension is not audio ((none): 1, .txt: 1)" in found.notes()[0]


def test_a_non_audio_file_is_listed_as_failed_with_its_reason(folder, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    found = collect_inputs([str(folder), str(notes), str(tmp_path / "missing.wav")])
    reasons = {Path(f.path).name: f.reason for f in found.failures}
    assert set(reasons) == {"broken.wav", "notes.txt", "missing.wav"}
    assert "not an audio file" in reasons["broken.wav"] and "Format not recognised" in reasons["broken.wav"]
    assert "not an audio file" in reasons["notes.txt"]  # a file given by name is tried whatever its extension
    assert reasons["missing.wav"].endswith("no such file or folder")
    assert len(found.items) == 3  # the rest is still there


def test_a_file_given_twice_is_transcribed_once_and_ids_stay_unique(folder, tmp_path):
    other = tone(tmp_path / "other" / "a.wav")  # same stem as folder/a.wav
    found = collect_inputs([str(folder / "a.wav"), str(folder / "a.wav"), str(other)])
    assert [item.id for item in found.items] == ["a", "a~2"]
    assert found.duplicates == 1 and "1 files given more than once" in found.notes()[0]


def test_a_cut_manifest_gives_one_item_per_cut_with_its_reference(tmp_path):
    cuts = tone_corpus(tmp_path / "corpus", "dev", num_cuts=3, seed=0)
    manifest = tmp_path / "corpus" / "cuts_dev.jsonl.gz"
    found = collect_inputs([str(manifest)])
    assert [item.id for item in found.items] == [cut.id for cut in cuts]
    assert [item.ref for item in found.items] == [cut.supervisions[0].text for cut in cuts]
    assert found.items[0].path == cuts[0].recording.sources[0].source
    audio = load_waveform(found.items[0])  # read through Lhotse, resampled to 16 kHz
    assert audio.shape == (round(cuts[0].duration * 16000),) and audio.dtype == np.float32


def test_a_recording_manifest_and_a_bad_manifest(tmp_path):
    tone_corpus(tmp_path / "corpus", "dev", num_cuts=2, seed=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    found = collect_inputs([str(tmp_path / "corpus" / "recordings_dev.jsonl.gz"), str(bad)])
    assert len(found.items) == 2
    assert len(found.failures) == 1 and found.failures[0].reason.startswith(f"{bad}: not a readable Lhotse manifest")


def test_waveforms_are_mono_16k_and_undecodable_audio_is_an_error(tmp_path):
    stereo = tone(tmp_path / "stereo.wav", 0.5, rate=22050, channels=2)
    item = collect_inputs([str(stereo)]).items[0]
    audio = load_waveform(item)
    assert audio.shape == (8000,) and audio.dtype == np.float32  # 0.5 s at 16 kHz, channels averaged
    shutil.copyfile(stereo, tmp_path / "truncated.wav")
    item = collect_inputs([str(tmp_path / "truncated.wav")]).items[0]
    (tmp_path / "truncated.wav").write_bytes(b"RIFF")  # broken after it was listed
    with pytest.raises(SpeechkitError, match="truncated.wav: cannot decode the audio"):
        load_waveform(item)


def test_no_input_is_an_error():
    with pytest.raises(SpeechkitError, match="no input"):
        collect_inputs([])
