"""Manifests: bad lines and truncated files named with their line; the header-only checks of check_manifest."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import soundfile as sf
from lhotse import CutSet, Recording

from speechkit.data import load_cuts
from speechkit.data.manifests import audio_problem, check_manifest, language_code, same_language
from speechkit.errors import SpeechkitError
from speechkit.testing import tone_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("tones")
    tone_corpus(out, "dev", num_cuts=40, seed=2)
    return out


def lines(corpus) -> list[str]:
    with gzip.open(corpus / "cuts_dev.jsonl.gz", "rt") as f:
        return f.readlines()


def test_a_malformed_later_line_is_named(corpus, tmp_path):
    """Issue 11, defect 11: a bad line after the first was a JSONDecodeError traceback naming nothing."""
    rows = lines(corpus)
    rows[2] = rows[2][:40] + "\n"
    bad = tmp_path / "cuts_bad.jsonl.gz"
    with gzip.open(bad, "wt") as f:
        f.writelines(rows)
    cuts = load_cuts(str(bad), "train_cuts")  # the first line parses
    with pytest.raises(SpeechkitError, match=rf"^train_cuts: {bad} line 3 is not a Lhotse cut \(JSONDecodeError"):
        list(cuts)


def test_a_truncated_gzip_is_named(corpus, tmp_path):
    data = (corpus / "cuts_dev.jsonl.gz").read_bytes()
    cut = tmp_path / "cuts_cut.jsonl.gz"
    cut.write_bytes(data[: len(data) * 3 // 4])  # ends inside the compressed stream
    cuts = load_cuts(str(cut), "dev_cuts")
    with pytest.raises(SpeechkitError, match=rf"^dev_cuts: {cut} is truncated or corrupt after line \d+"):
        for _ in cuts:
            pass
    with pytest.raises(SpeechkitError, match=rf"^dev_cuts: {cut} is truncated or corrupt"):
        len(cuts)


def test_a_non_cut_line_is_named(corpus, tmp_path):
    rows = lines(corpus)
    recording = CutSet.from_file(corpus / "cuts_dev.jsonl.gz")[0].recording.to_dict()
    import json

    rows.insert(1, json.dumps(recording) + "\n")
    bad = tmp_path / "cuts_mixed.jsonl"
    bad.write_text("".join(rows))
    with pytest.raises(SpeechkitError, match=r"line 2 holds a Recording, not cuts"):
        list(load_cuts(str(bad), "dev_cuts"))


def test_the_reader_reads_every_cut_in_order(corpus):
    cuts = load_cuts([str(corpus / "cuts_dev.jsonl.gz")] * 2, "dev_cuts")
    ids = [cut.id for cut in CutSet.from_file(corpus / "cuts_dev.jsonl.gz")]
    assert [cut.id for cut in cuts] == ids * 2
    assert cuts.is_lazy


def test_language_codes_compare_names_tokens_and_regions():
    assert language_code("English") == language_code("<|en|>") == language_code(" EN ") == "en"
    assert language_code("cmn") == "zh" and language_code("pashto") == "ps"
    assert same_language("zh-CN", "zh") and same_language("pt_BR", "pt") and same_language("English", "en")
    assert not same_language("de", "en") and not same_language("ky", "kk")


def wav(path, seconds: float, rate: int = 16000) -> Recording:
    sf.write(path, np.zeros(int(seconds * rate), dtype=np.float32), rate)
    return Recording.from_file(path)


def test_audio_problems_from_the_header(tmp_path):
    recording = wav(tmp_path / "a.wav", 1.0)
    source = recording.sources[0]
    assert audio_problem(source, recording) is None
    (tmp_path / "a.wav").write_bytes((tmp_path / "a.wav").read_bytes()[:8044])  # 0.25 s left (16-bit PCM)
    expected = f"{tmp_path / 'a.wav'} holds 0.250 s of audio but the manifest says 1.000 s"
    assert audio_problem(source, recording) == expected
    other = wav(tmp_path / "b.wav", 1.0, rate=8000)
    assert "is 8000 Hz but the manifest says 16000 Hz" in audio_problem(other.sources[0], recording)
    (tmp_path / "c.wav").write_text("not audio")
    source.source = str(tmp_path / "c.wav")
    assert audio_problem(source, recording).startswith(f"{tmp_path / 'c.wav'} does not open as audio")
    source.source = str(tmp_path / "gone.wav")
    assert audio_problem(source, recording) == f"{tmp_path / 'gone.wav'} does not exist"


def test_check_manifest_reports_and_reads_headers_only(corpus, tmp_path, monkeypatch):
    cuts = CutSet.from_file(corpus / "cuts_dev.jsonl.gz").to_eager()
    first, second = list(cuts)[:2]
    first.recording.sources[0].source = str(tmp_path / "gone.wav")
    first.supervisions[0].language = "de"
    second.supervisions[0].language = None
    cuts.to_file(tmp_path / "cuts_dev.jsonl.gz")

    def no_decoding(*args, **kwargs):
        raise AssertionError("the check decoded audio")

    monkeypatch.setattr(sf, "read", no_decoding)
    monkeypatch.setattr(Recording, "load_audio", no_decoding)
    longest = max(cut.duration for cut in cuts)
    report = check_manifest(str(tmp_path / "cuts_dev.jsonl.gz"), "dev_cuts", max_seconds=longest - 1e-3,
                            language="en", open_audio=True)
    assert report.cuts == 40 and report.audio_files == 40 and report.no_language == 1
    assert [(f.cut_id, f.line) for f in report.unreadable] == [(first.id, 1)]
    assert [(f.cut_id, f.problem) for f in report.other_language] == [(first.id, "supervision language de")]
    assert [f.problem for f in report.too_long] == [f"{longest:.2f} s > {longest - 1e-3:.2f} s"]
    quiet = check_manifest(str(tmp_path / "cuts_dev.jsonl.gz"), "train_cuts")  # durations only: no header read
    assert quiet.audio_files == 0 and not quiet.unreadable and not quiet.too_long and not quiet.other_language
