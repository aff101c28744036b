"""Transcripts to files: JSONL, plain text, SubRip (``.srt``) and WebVTT (``.vtt``), every file written atomically.

A file is written to a temporary file in its own folder, flushed, fsynced and renamed into place
(``os.replace``): a crash or a full disk never leaves a partial file under the name, and a file that was there
before stays as it was until the new one is complete.

``jsonl``: one :meth:`Transcript.to_json` row a line. ``txt``: ``<id> <text>`` a line (Kaldi's ``text`` format,
so that every line traces back to its input). ``srt`` / ``vtt``: subtitles need one file per input; ``--out`` is
that file when there is one transcript and ``--out`` is not an existing folder, and otherwise a folder holding
``<id>.srt`` / ``<id>.vtt`` for every transcript.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterable, Literal

from speechkit.errors import SpeechkitError
from speechkit.models.transcript import Segment, Transcript

OutputFormat = Literal["jsonl", "txt", "srt", "vtt"]
SUBTITLE_FORMATS = ("srt", "vtt")


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file in the same folder, fsync, ``os.replace``.

    Raises:
        SpeechkitError: the folder cannot be created or written, or the disk is full (naming ``path``); the
            temporary file is removed and a previous file under ``path`` is left unchanged.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise SpeechkitError(f"{path}: cannot write here ({error.strerror or error})") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise SpeechkitError(f"{path}: cannot write ({error.strerror or error}); nothing written") from None
        raise
    return path


def format_timestamp(seconds: float, decimal_marker: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SubRip; ``decimal_marker="."`` for WebVTT); hours grow past 99 if they must."""
    milliseconds = max(0, round(seconds * 1000))
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    whole, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{whole:02d}{decimal_marker}{milliseconds:03d}"


def to_srt(transcript: Transcript) -> str:
    """SubRip cues, numbered from 1: ``n``, ``start --> end``, the text, a blank line."""
    cues = []
    for number, segment in enumerate(_cues(transcript), start=1):
        times = f"{format_timestamp(segment.start)} --> {format_timestamp(segment.end)}"
        cues.append(f"{number}\n{times}\n{segment.text}\n")
    return "\n".join(cues)


def to_vtt(transcript: Transcript) -> str:
    """WebVTT: the ``WEBVTT`` header, then ``start --> end`` and the text of every cue."""
    cues = ["WEBVTT\n"]
    for segment in _cues(transcript):
        times = f"{format_timestamp(segment.start, '.')} --> {format_timestamp(segment.end, '.')}"
        cues.append(f"{times}\n{segment.text}\n")
    return "\n".join(cues)


def _cues(transcript: Transcript) -> list[Segment]:
    """Segments with text (a cue cannot be empty), each text on one line (a blank line would end the cue)."""
    return [Segment(s.start, s.end, " ".join(s.text.split())) for s in transcript.segments if s.text.strip()]


def to_jsonl(transcripts: Iterable[Transcript]) -> str:
    """One JSON object a line (UTF-8 text kept as it is, not ``\\u`` escaped)."""
    return "".join(json.dumps(t.to_json(), ensure_ascii=False) + "\n" for t in transcripts)


def to_txt(transcripts: Iterable[Transcript]) -> str:
    """``<id> <text>`` a line (the text on one line)."""
    return "".join(f"{t.id} {' '.join(t.text.split())}\n" for t in transcripts)


def subtitle_path(folder: Path, transcript_id: str, fmt: str) -> Path:
    """``<folder>/<id>.<fmt>``; an id's ``/`` makes sub-folders; ``..`` or an absolute id never leaves ``folder``."""
    parts = [part if part not in ("", ".", "..") else "_" for part in transcript_id.replace("\\", "/").split("/")]
    return folder.joinpath(*parts[:-1], f"{parts[-1]}.{fmt}")


def write_transcripts(transcripts: list[Transcript], out: str | os.PathLike, fmt: OutputFormat = "jsonl") -> list[Path]:
    """Write transcripts in ``fmt``; return the files written.

    Args:
        transcripts: in the order they should appear.
        out: the output file; for ``srt`` / ``vtt`` a folder when there is more than one transcript or ``out`` is
            an existing folder.
        fmt: ``jsonl``, ``txt``, ``srt`` or ``vtt``.
    """
    out = Path(out)
    if fmt == "jsonl":
        return [write_text_atomic(out, to_jsonl(transcripts))]
    if fmt == "txt":
        return [write_text_atomic(out, to_txt(transcripts))]
    if fmt not in SUBTITLE_FORMATS:
        raise SpeechkitError(f"--format {fmt!r}: expected one of jsonl, txt, srt, vtt")
    render = to_srt if fmt == "srt" else to_vtt
    if len(transcripts) == 1 and not out.is_dir():
        return [write_text_atomic(out, render(transcripts[0]))]
    return [write_text_atomic(subtitle_path(out, t.id, fmt), render(t)) for t in transcripts]
