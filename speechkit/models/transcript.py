"""What ``speechkit transcribe`` produces for one input: the text, its language and timed segments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Segment:
    """A stretch of the transcript with its time in the input, in seconds from the start of the input."""

    start: float
    end: float
    text: str

    def to_json(self) -> dict[str, Any]:
        """``{"start", "end", "text"}`` with times rounded to milliseconds."""
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


@dataclass(frozen=True)
class Decoded:
    """What the decoder returns for one input: text, language code and segments."""

    text: str
    language: str
    segments: list[Segment] = field(default_factory=list)


@dataclass(frozen=True)
class Transcript:
    """One output line: a decoded input traced back to its file (and cut, for a manifest).

    Attributes:
        id: the input's id (a cut id, or the file's path relative to the folder given, without its extension).
        path: the audio file (``None`` when unknown, e.g. in ``predict_step``).
        text: the whole transcript.
        language: the language code it was decoded in (given or detected).
        segments: timed segments; a short input (<= 30 s) is one segment spanning the whole input.
        duration: seconds of audio.
        ref: the reference text of a manifest's cut, when it has one (so the file can be scored).
    """

    id: str
    path: Optional[str]
    text: str
    language: str
    segments: list[Segment]
    duration: float
    ref: Optional[str] = None

    def to_json(self) -> dict[str, Any]:
        """The JSONL row: ``id, path, text, language, segments, duration`` (and ``ref`` when known)."""
        row: dict[str, Any] = {
            "id": self.id, "path": self.path, "text": self.text, "language": self.language,
            "segments": [segment.to_json() for segment in self.segments], "duration": round(self.duration, 3),
        }
        if self.ref is not None:
            row["ref"] = self.ref
        return row
