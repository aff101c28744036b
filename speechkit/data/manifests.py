"""Cut manifests read with errors that name the file and line, and the checks run on them before training.

``load_cuts`` reads JSONL manifests through :class:`CutManifest`, a lazy reader that turns a truncated gzip
stream, a malformed line or a non-cut item anywhere in the file into a one-line ``SpeechkitError`` naming the
file and the line (Lhotse's own reader only names them for the first line). :func:`check_manifest` reads a
manifest once, cheaply: cut durations and supervision languages from the manifest itself and, on request, every
audio file's header (``soundfile.info``; no decoding), so that ``SpeechDataModule.setup`` can refuse bad data
before the first training step instead of at the validation or step that reaches it.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

import soundfile
from lhotse import CutSet, Recording
from lhotse.audio import AudioSource
from lhotse.cut import Cut
from lhotse.lazy import Dillable, LazyIteratorChain, count_newlines_fast
from lhotse.serialization import decode_json_line, deserialize_item, extension_contains, open_best

from speechkit.errors import SpeechkitError

Paths = Union[str, list[str]]
# Formats whose header frame count is exact (compressed streams such as MP3 only estimate it).
_EXACT_HEADER_FORMATS = {"WAV", "WAVEX", "FLAC", "AIFF", "OGG", "W64", "RF64", "CAF"}
_SHOWN = 3  # examples named in a one-line error
# ISO 639-3 / other codes that corpora write (eSpeak NG voices: cmn, nb) -> the code Whisper uses.
_LANGUAGE_ALIASES = {"cmn": "zh", "zho": "zh", "nb": "no", "nob": "no", "eng": "en"}


def _as_list(paths: Paths) -> list[str]:
    return [paths] if isinstance(paths, (str, Path)) else [str(p) for p in paths]


class CutManifest(Dillable):
    """A JSONL(.gz) cut manifest read lazily, one cut per line; any bad line is an error naming file and line.

    A ``CutSet(CutManifest(path, what))`` behaves like Lhotse's lazy ``CutSet.from_file(path)`` (iterate, map,
    filter, concatenate, bucket). Blank lines carry nothing and are passed over.

    Args:
        path: the manifest (``cuts_<split>.jsonl.gz`` or ``.jsonl``).
        what: what it is for, e.g. ``"dev_cuts"`` (starts every error message).
    """

    def __init__(self, path: str, what: str) -> None:
        self.path = str(path)
        self.what = what

    def numbered(self) -> Iterator[tuple[int, Cut]]:
        """``(line number, cut)`` for every cut, lines counted from 1.

        Raises:
            SpeechkitError: a missing file, a truncated or corrupt gzip stream, a line that is not JSON or not a
                Lhotse cut.
        """
        number = 0
        try:
            with open_best(self.path, "r") as stream:
                for number, line in enumerate(stream, start=1):
                    if line.strip():
                        yield number, self._cut(line, number)
        except FileNotFoundError as error:
            raise SpeechkitError(f"{self.what}: manifest {self.path} does not exist") from error
        except (EOFError, OSError, zlib.error, UnicodeDecodeError) as error:  # gzip.BadGzipFile is an OSError
            raise SpeechkitError(
                f"{self.what}: {self.path} is truncated or corrupt after line {number} ({error}); re-create it "
                "(speechkit prepare)"
            ) from error

    def _cut(self, line: str, number: int) -> Cut:
        where = f"{self.what}: {self.path} line {number}"
        try:
            item = deserialize_item(decode_json_line(line))
        except Exception as error:  # json/orjson decode errors, Lhotse's KeyError/TypeError/ValueError on bad dicts
            raise SpeechkitError(f"{where} is not a Lhotse cut ({type(error).__name__}: {error})") from error
        if not isinstance(item, Cut):
            raise SpeechkitError(f"{where} holds a {type(item).__name__}, not cuts as expected (use cuts_*.jsonl.gz)")
        return item

    def __iter__(self) -> Iterator[Cut]:
        return (cut for _, cut in self.numbered())

    def __len__(self) -> int:
        try:
            return count_newlines_fast(self.path)  # as Lhotse's lazy reader: lines, without parsing them
        except FileNotFoundError as error:
            raise SpeechkitError(f"{self.what}: manifest {self.path} does not exist") from error
        except (EOFError, OSError, zlib.error) as error:
            raise SpeechkitError(f"{self.what}: {self.path} is truncated or corrupt ({error}); re-create it "
                                 "(speechkit prepare)") from error

    def __add__(self, other) -> LazyIteratorChain:
        return LazyIteratorChain(self, other)


def _is_jsonl(path: str) -> bool:
    return extension_contains(".jsonl", path)


def _load_other(path: str, what: str) -> CutSet:
    """A manifest that is not JSONL (``.json``, ``.yaml``, ...): Lhotse's reader, first item checked."""
    try:
        cuts = CutSet.from_file(path)
        first = next(iter(cuts), None)
    except FileNotFoundError as error:
        raise SpeechkitError(f"{what}: manifest {path} does not exist") from error
    except Exception as error:
        raise SpeechkitError(f"{what}: {path} is not a Lhotse cut manifest (JSONL of cuts): {error}") from error
    if first is None:
        raise SpeechkitError(f"{what}: manifest {path} holds no cuts")
    if not hasattr(first, "recording"):
        raise SpeechkitError(f"{what}: {path} holds {type(first).__name__} items, not cuts (use cuts_*.jsonl.gz)")
    return cuts


def load_cuts(paths: Paths, what: str) -> CutSet:
    """Reads one or more Lhotse cut manifests (lazily, concatenated in order).

    The first cut of each file is parsed at once; a bad line further on is an error naming the file and the line
    when the cuts are read (``check_manifest`` reads them all before training).

    Raises:
        SpeechkitError: a missing, empty or non-cut manifest, naming it.
    """
    sets = []
    for path in _as_list(paths):
        if not _is_jsonl(path):
            sets.append(_load_other(path, what))
            continue
        manifest = CutManifest(path, what)
        if next(manifest.numbered(), None) is None:
            raise SpeechkitError(f"{what}: manifest {path} holds no cuts")
        sets.append(CutSet(manifest))
    cuts = sets[0]
    for other in sets[1:]:
        cuts = cuts + other
    return cuts


def write_cuts_atomic(cuts: CutSet, path: str | os.PathLike) -> Path:
    """``cuts.to_file`` into a hidden temporary file beside ``path`` (same suffixes, so Lhotse picks the format),
    then renamed onto it: a failed write leaves no partial manifest under the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}{''.join(path.suffixes)}")
    try:
        cuts.to_file(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def numbered_cuts(paths: Paths, what: str) -> Iterator[tuple[str, int, Cut]]:
    """``(path, line or item number, cut)`` for every cut of every manifest."""
    for path in _as_list(paths):
        if _is_jsonl(path):
            for number, cut in CutManifest(path, what).numbered():
                yield path, number, cut
        else:
            for number, cut in enumerate(_load_other(path, what), start=1):
                yield path, number, cut


# --------------------------------------------------------------------------------------------- checks


def language_code(label: str) -> str:
    """A comparable language code: ``"en"``, ``"<|en|>"``, ``"English"`` and ``"EN"`` all give ``"en"``.

    Names Whisper knows (``"english"``, ``"pashto"`` ...) map to their code, a few ISO 639-3 codes corpora use
    (``cmn``, ``nb``) to Whisper's (``zh``, ``no``); anything else is lower-cased.
    """
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    code = label.strip().lower()
    if code.startswith("<|") and code.endswith("|>"):
        code = code[2:-2]
    code = TO_LANGUAGE_CODE.get(code, code)
    return _LANGUAGE_ALIASES.get(code, code)


def same_language(label: str, expected: str) -> bool:
    """Whether a supervision's language label is the configured language (a region suffix is ignored:
    ``zh-CN`` and ``pt_BR`` match ``zh`` and ``pt``)."""
    code, wanted = language_code(label), language_code(expected)
    return code == wanted or code.replace("_", "-").split("-")[0] == wanted


def _recordings(cut: Cut) -> list[Recording]:
    if getattr(cut, "tracks", None) is not None:  # a MixedCut: every track's recording
        return [r for track in cut.tracks for r in _recordings(track.cut)]
    return [cut.recording] if cut.has_recording else []


def _where(path: str) -> str:
    return path if os.path.isabs(path) else f"{path} (relative to {os.getcwd()})"


def audio_problem(source: AudioSource, recording: Recording) -> Optional[str]:
    """What is wrong with one audio file, from its header alone (no decoding); ``None`` if it opens.

    A file must exist and open; where its header's frame count is exact (WAV, FLAC, ...) and the recording has
    no transforms, its sampling rate must be the manifest's and it must not be shorter than the manifest says
    (beyond Lhotse's duration tolerance). Sources that are not files (URLs, commands, memory) are not checked.
    """
    if source.type != "file":
        return None
    path = str(source.source)
    if not os.path.isfile(path):
        return f"{_where(path)} does not exist"
    try:
        info = soundfile.info(path)
    except Exception:  # not a libsndfile format (opus, m4a ...): Lhotse's other audio backends
        from lhotse.audio.backend import info as lhotse_info

        try:
            lhotse_info(path)
        except Exception as error:
            return f"{path} does not open as audio ({str(error).splitlines()[0][:200]})"
        return None
    if recording.transforms or info.format not in _EXACT_HEADER_FORMATS:
        return None
    if info.samplerate != recording.sampling_rate:
        return f"{path} is {info.samplerate} Hz but the manifest says {recording.sampling_rate} Hz"
    from lhotse.audio.utils import get_audio_duration_mismatch_tolerance

    seconds = info.frames / info.samplerate
    if seconds + get_audio_duration_mismatch_tolerance() < recording.duration:
        return f"{path} holds {seconds:.3f} s of audio but the manifest says {recording.duration:.3f} s"
    return None


@dataclass
class Finding:
    """One cut that failed a check: where it is and what is wrong."""

    cut_id: str
    path: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"cut {self.cut_id!r} ({self.path} line {self.line}): {self.problem}"


@dataclass
class ManifestReport:
    """What :func:`check_manifest` found in one split's manifests.

    Attributes:
        what: the split's config key (``"train_cuts"``).
        cuts: cuts read.
        audio_files: distinct audio files whose header was read.
        unchecked_sources: audio sources that are not files (URLs, commands, memory): not opened.
        no_language: cuts none of whose supervisions names a language (not compared).
        unreadable: cuts whose audio is missing or does not open.
        too_long: cuts longer than the limit (the problem says by how much).
        other_language: cuts with a supervision in another language than the expected one.
    """

    what: str
    cuts: int = 0
    audio_files: int = 0
    unchecked_sources: int = 0
    no_language: int = 0
    unreadable: list[Finding] = field(default_factory=list)
    too_long: list[Finding] = field(default_factory=list)
    other_language: list[Finding] = field(default_factory=list)


def summarize(findings: list[Finding]) -> str:
    """The first few findings and how many more, on one line."""
    shown = "; ".join(str(f) for f in findings[:_SHOWN])
    return shown + (f"; and {len(findings) - _SHOWN} more" if len(findings) > _SHOWN else "")


def check_manifest(
    paths: Paths,
    what: str,
    max_seconds: Optional[float] = None,
    language: Optional[str] = None,
    open_audio: bool = False,
) -> ManifestReport:
    """Read every cut of a split's manifests once and report what would fail later.

    Args:
        paths: the split's manifest(s).
        what: its config key, for messages (``"dev_cuts"``).
        max_seconds: cuts longer than this are reported in ``too_long``; ``None``: no limit.
        language: supervisions with another language are reported in ``other_language``; ``None``: not checked.
        open_audio: read every audio file's header (``audio_problem``); off for training manifests, whose
            durations alone are checked.

    Raises:
        SpeechkitError: a manifest that is missing, truncated or malformed (file and line named).
    """
    report = ManifestReport(what)
    seen: dict[str, Optional[str]] = {}
    for path, line, cut in numbered_cuts(paths, what):
        report.cuts += 1
        if max_seconds is not None and cut.duration > max_seconds:
            report.too_long.append(Finding(cut.id, path, line, f"{cut.duration:.2f} s > {max_seconds:.2f} s"))
        if language is not None:
            labels = [s.language for s in cut.supervisions if s.language]
            if not labels:
                report.no_language += 1
            other = sorted({label for label in labels if not same_language(label, language)})
            if other:
                report.other_language.append(
                    Finding(cut.id, path, line, f"supervision language {', '.join(other)}"))
        if open_audio:
            for recording in _recordings(cut):
                for source in recording.sources:
                    if source.type != "file":
                        report.unchecked_sources += 1
                        continue
                    key = str(source.source)
                    if key not in seen:
                        seen[key] = audio_problem(source, recording)
                    if seen[key] is not None:
                        report.unreadable.append(Finding(cut.id, path, line, seen[key]))
    report.audio_files = len(seen)
    return report
