"""speechkit.inference.writers: SRT / VTT timestamps, JSONL and txt rows, atomic writes."""

from __future__ import annotations

import json
import os

import pytest

from speechkit.errors import SpeechkitError
from speechkit.inference import writers
from speechkit.models.transcript import Segment, Transcript
from speechkit.inference.writers import (
    format_timestamp,
    to_srt,
    to_vtt,
    write_transcripts,
)


def transcript(id_: str = "talk", text: str = "hello there. general kenobi") -> Transcript:
    segments = [Segment(0.0, 1.5, "hello there."), Segment(1.5, 3723.0456, "general\nkenobi"), Segment(4000, 4001, " ")]
    return Transcript(id_, f"/audio/{id_}.wav", text, "en", segments, 3725.0, ref=None)


@pytest.mark.parametrize("seconds, srt, vtt", [
    (0.0, "00:00:00,000", "00:00:00.000"),
    (1.5, "00:00:01,500", "00:00:01.500"),
    (59.9996, "00:01:00,000", "00:01:00.000"),  # rounded to the millisecond, carried into the minute
    (3723.0456, "01:02:03,046", "01:02:03.046"),
    (100 * 3600 + 0.001, "100:00:00,001", "100:00:00.001"),  # hours grow past two digits
])
def test_timestamps(seconds, srt, vtt):
    assert format_timestamp(seconds) == srt and format_timestamp(seconds, ".") == vtt


def test_srt_numbers_cues_and_keeps_each_text_on_one_line():
    assert to_srt(transcript()) == (
        "1\n00:00:00,000 --> 00:00:01,500\nhello there.\n\n"
        "2\n00:00:01,500 --> 01:02:03,046\ngeneral kenobi\n"  # a blank segment makes no (empty) cue
    )


def test_vtt_has_its_header_and_dot_milliseconds():
    assert to_vtt(transcript()) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nhello there.\n\n00:00:01.500 --> 01:02:03.046\ngeneral kenobi\n"
    )


def test_jsonl_rows_and_txt_lines(tmp_path):
    rows = [transcript("a", "é ü"), transcript("b", "two\nlines")]
    write_transcripts(rows, tmp_path / "out.jsonl", "jsonl")
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["id", "path", "text", "language", "segments", "duration"]
    assert first["text"] == "é ü" and '"é ü"' in lines[0]  # not \u-escaped
    assert first["segments"][1] == {"start": 1.5, "end": 3723.046, "text": "general\nkenobi"}
    write_transcripts(rows, tmp_path / "out.txt", "txt")
    assert (tmp_path / "out.txt").read_text() == "a é ü\nb two lines\n"


def test_subtitles_of_several_inputs_go_to_one_file_each(tmp_path):
    rows = [transcript("sub/a"), transcript("../b")]
    written = write_transcripts(rows, tmp_path / "subs", "vtt")
    assert written == [tmp_path / "subs" / "sub" / "a.vtt", tmp_path / "subs" / "_" / "b.vtt"]  # never outside
    assert write_transcripts(rows[:1], tmp_path / "one.srt", "srt") == [tmp_path / "one.srt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writers.os, "fsync", full_disk)
    with pytest.raises(SpeechkitError, match="out.jsonl: cannot write .No space left on device.; nothing written"):
        write_transcripts([transcript()], out, "jsonl")
    assert out.read_text() == "previous\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]  # the temporary file is gone


def test_a_write_replaces_the_file_in_one_step(tmp_path, monkeypatch):
    out = tmp_path / "out.srt"
    out.write_text("old")
    seen = []
    real_replace = os.replace

    def replace(source, target):
        with open(source) as file:
            seen.append((os.path.dirname(source), os.path.basename(source), file.read()))
        real_replace(source, target)

    monkeypatch.setattr(writers.os, "replace", replace)
    write_transcripts([transcript()], out, "srt")
    folder, name, text = seen[0]
    assert folder == str(tmp_path) and name.startswith(".out.srt.")  # a temporary in the same folder
    assert text == out.read_text() == to_srt(transcript())
