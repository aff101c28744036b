"""Inputs of ``speechkit transcribe``: audio files, folders and Lhotse manifests -> audio items; items -> waveforms.

* an audio file: one item, id = the file name without its extension;
* a folder: every file under it (recursively, symbolic links to folders not followed) whose extension is an audio
  extension, in any case (``.WAV`` as ``.wav``); id = its path relative to the folder, without the extension. Other
  files are not audio by name: they are counted by extension and reported, never read;
* a Lhotse manifest (``.jsonl`` / ``.jsonl.gz``) of cuts or recordings: one item per cut (id = the cut id, with
  the cut's reference text when it has one).

An input that cannot be used (missing, unreadable, not audio, an unreadable manifest) becomes a :class:`Failure`
with its reason; the others go on. Durations come from file headers (no decoding), so items can be sorted by
duration before anything is decoded.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import soundfile

from speechkit.errors import SpeechkitError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm", ".aif", ".aiff", ".sph", ".wma"}
)
MANIFEST_SUFFIXES = (".jsonl", ".jsonl.gz")
SAMPLING_RATE = 16000  # what Whisper's feature extractor takes


@dataclass(frozen=True)
class AudioItem:
    """One thing to transcribe.

    Attributes:
        id: unique among the inputs of a run (see the module docstring).
        path: the audio file (for a cut: its recording's file, or the manifest when the audio is not a file).
        duration: seconds, from the file header or the manifest.
        cut: the Lhotse cut of a manifest input (its audio is read through Lhotse: offsets, channels, formats).
        ref: the cut's reference text, when it has one.
    """

    id: str
    path: str
    duration: float
    cut: Any = None
    ref: Optional[str] = None


@dataclass(frozen=True)
class Failure:
    """An input that could not be transcribed and why (one line)."""

    path: str
    reason: str
    id: Optional[str] = None

    def to_json(self) -> dict[str, Optional[str]]:
        """``{"id", "path", "error"}``, the row of ``<out>.errors.jsonl``."""
        return {"id": self.id, "path": self.path, "error": self.reason}


@dataclass
class Inputs:
    """The items found in the inputs, the inputs that failed, and what was passed over on purpose.

    Attributes:
        items: in the order given (folders in sorted path order).
        failures: inputs that cannot be transcribed, with the reason.
        not_audio: files inside folders whose extension is not an audio extension, by extension.
        duplicates: files given more than once (transcribed once).
    """

    items: list[AudioItem] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    not_audio: Counter = field(default_factory=Counter)
    duplicates: int = 0

    def notes(self) -> list[str]:
        """One line for each thing passed over on purpose (nothing is dropped without being said)."""
        lines = []
        if self.not_audio:
            counts = ", ".join(f"{ext or '(none)'}: {n}" for ext, n in sorted(self.not_audio.items()))
            lines.append(f"not transcribed: {sum(self.not_audio.values())} files in the folders given whose "
                         f"extension is not audio ({counts}); audio extensions: {' '.join(sorted(AUDIO_EXTENSIONS))}")
        if self.duplicates:
            lines.append(f"not transcribed twice: {self.duplicates} files given more than once")
        return lines


def is_audio_name(path: Path) -> bool:
    """Whether the file name ends with an audio extension, in any case."""
    return path.suffix.lower() in AUDIO_EXTENSIONS


def is_manifest(path: Path) -> bool:
    """Whether the file name is a Lhotse JSONL manifest's (``.jsonl`` / ``.jsonl.gz``)."""
    return path.name.lower().endswith(MANIFEST_SUFFIXES)


def folder_files(folder: Path) -> tuple[list[Path], Counter]:
    """Audio files under ``folder`` (recursive, sorted) and the other files' extensions (lower case) counted."""
    audio, other = [], Counter()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if is_audio_name(path):
                audio.append(path)
            else:
                other[path.suffix.lower()] += 1
    return audio, other


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def probe_duration(path: Path) -> float:
    """Seconds of audio from the file header (soundfile; Lhotse's backends for what soundfile cannot open).

    Raises:
        SpeechkitError: not an audio file any backend reads, or an empty one, naming ``path``.
    """
    try:
        info = soundfile.info(str(path))
        duration = info.frames / info.samplerate
    except Exception as soundfile_error:  # libsndfile raises several types for what is not audio
        try:
            from lhotse.audio.backend import info as lhotse_info

            duration = float(lhotse_info(str(path)).duration)
        except Exception:  # every backend failed: soundfile's reason is the clearest
            raise SpeechkitError(f"{path}: not an audio file ({_first_line(soundfile_error)})") from None
    if not duration > 0:
        raise SpeechkitError(f"{path}: empty audio (0 samples)")
    return float(duration)


def _cut_items(manifest: Path) -> list[AudioItem]:
    """One item per cut of a cut manifest, or per recording of a recording manifest."""
    from lhotse import CutSet, RecordingSet, load_manifest_lazy

    try:
        loaded = load_manifest_lazy(manifest)
        if isinstance(loaded, RecordingSet):
            loaded = CutSet.from_manifests(recordings=loaded)
        if not isinstance(loaded, CutSet):
            raise SpeechkitError(f"{manifest}: a {type(loaded).__name__} manifest has no audio; give the cuts "
                                 "(or recordings) manifest")
        return [_cut_item(cut, manifest) for cut in loaded]
    except SpeechkitError:
        raise
    except Exception as error:  # gzip, JSON and Lhotse errors: one line naming the manifest
        raise SpeechkitError(f"{manifest}: not a readable Lhotse manifest ({_first_line(error)})") from None


def _cut_item(cut: Any, manifest: Path) -> AudioItem:
    sources = [s.source for s in cut.recording.sources if s.type == "file"] if cut.has_recording else []
    texts = [s.text for s in cut.supervisions if s.text]
    ref = " ".join(texts) if texts else None
    return AudioItem(id=cut.id, path=sources[0] if sources else str(manifest), duration=float(cut.duration),
                     cut=cut, ref=ref)


class _Collector:
    """Builds :class:`Inputs` one input at a time, keeping ids unique and files once."""

    def __init__(self) -> None:
        self.inputs = Inputs()
        self.ids: set[str] = set()
        self.files: set[Path] = set()

    def unique_id(self, wanted: str) -> str:
        candidate, n = wanted, 1
        while candidate in self.ids:
            n += 1
            candidate = f"{wanted}~{n}"
        self.ids.add(candidate)
        return candidate

    def add_file(self, path: Path, wanted_id: str) -> None:
        resolved = path.resolve()
        if resolved in self.files:
            self.inputs.duplicates += 1
            return
        self.files.add(resolved)
        try:
            duration = probe_duration(path)
        except SpeechkitError as error:
            self.inputs.failures.append(Failure(str(path), str(error), wanted_id))
            return
        self.inputs.items.append(AudioItem(self.unique_id(wanted_id), str(path), duration))

    def add_manifest(self, path: Path) -> None:
        try:
            items = _cut_items(path)
        except SpeechkitError as error:
            self.inputs.failures.append(Failure(str(path), str(error)))
            return
        for item in items:
            self.inputs.items.append(AudioItem(self.unique_id(item.id), item.path, item.duration, item.cut, item.ref))

    def add(self, given: str) -> None:
        path = Path(given)
        if path.is_dir():
            files, other = folder_files(path)
            self.inputs.not_audio.update(other)
            for file in files:
                self.add_file(file, file.relative_to(path).with_suffix("").as_posix())
        elif path.is_file():
            self.add_manifest(path) if is_manifest(path) else self.add_file(path, path.stem)
        else:
            self.inputs.failures.append(Failure(given, f"{given}: no such file or folder"))


def collect_inputs(paths: Sequence[str]) -> Inputs:
    """Every item of the given files, folders and manifests, with the inputs that failed and what was passed over.

    Args:
        paths: audio files (any extension: a file given by name is always tried), folders, Lhotse manifests.

    Raises:
        SpeechkitError: no input given.
    """
    if not paths:
        raise SpeechkitError("no input: give audio files, folders or Lhotse manifests")
    collector = _Collector()
    for given in paths:
        collector.add(str(given))
    return collector.inputs


def _mono(audio: np.ndarray) -> np.ndarray:
    """``(T,)`` float32 from ``(T,)``, ``(C, T)`` (Lhotse) or ``(T, C)`` (soundfile, ``channels_last``)."""
    return np.asarray(audio if audio.ndim == 1 else audio.mean(axis=0), dtype=np.float32)


def _read_file(path: str, sampling_rate: int) -> np.ndarray:
    try:
        audio, rate = soundfile.read(path, dtype="float32", always_2d=True)
        audio = audio.T  # (C, T)
    except Exception:  # not a format libsndfile reads: Lhotse's backends (ffmpeg ...) try
        from lhotse import Recording

        return _mono(Recording.from_file(path).resample(sampling_rate).load_audio())
    audio = _mono(audio)
    if rate != sampling_rate:
        import librosa

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sampling_rate)
    return audio


def load_waveform(item: AudioItem, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """The item's audio, mono (channels averaged), at ``sampling_rate``: ``(T,)`` float32.

    Raises:
        SpeechkitError: the audio cannot be decoded, is empty or holds non-finite samples (naming the item).
    """
    try:
        if item.cut is not None:
            audio = _mono(item.cut.resample(sampling_rate).load_audio())
        else:
            audio = _read_file(item.path, sampling_rate)
    except Exception as error:  # decoders raise many types; the reason is kept, on one line
        raise SpeechkitError(f"{item.path}: cannot decode the audio ({_first_line(error)})") from None
    if audio.size == 0:
        raise SpeechkitError(f"{item.path}: empty audio (0 samples)")
    if not np.isfinite(audio).all():
        raise SpeechkitError(f"{item.path}: the audio holds NaN or infinite samples")
    return audio
