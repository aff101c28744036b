"""Audio checks at import: every recording is decoded once and refused (or skipped) if it cannot train.

A recording passes when it decodes; its decoded length equals what its header promises (for WAV the size of the
``data`` chunk, which libsndfile silently clips to the bytes present, so a truncated file would otherwise pass
as a shorter one) and what the manifest says; every sample is finite; it lasts at least ``min_duration``; and
somewhere it rises above ``SILENCE_PEAK`` (-80 dBFS). Files are read block by block, so memory stays small
whatever their length.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile
from lhotse import Recording

from speechkit.progress import progress_bar

MIN_DURATION = 0.1  # seconds; below it an STFT of a few frames crashes training
SILENCE_PEAK = 1e-4  # -80 dBFS: three 16-bit steps; a recording whose peak stays below it is silent
LOSSY_TOLERANCE = 0.025  # seconds a lossy format (MP3, Ogg) may decode longer or shorter than its header says
EXACT_FORMATS = frozenset({"WAV", "WAVEX", "W64", "RF64", "FLAC", "AIFF", "CAF"})
BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class Rejection:
    """One recording refused at import, as written to ``rejected.jsonl``."""

    split: str
    recording_id: str
    path: str
    reason: str

    def to_dict(self) -> dict:
        """The JSON record of this rejection."""
        return asdict(self)


@dataclass
class _Scan:
    """What one pass over the samples found."""

    frames: int = 0
    peak: float = 0.0
    nonfinite: int = 0

    def add(self, block: np.ndarray) -> None:
        finite = np.isfinite(block)
        self.frames += block.shape[0]
        self.nonfinite += int(block.size - np.count_nonzero(finite))
        if block.size:
            self.peak = max(self.peak, float(np.abs(np.where(finite, block, 0.0)).max()))


def recording_path(recording: Recording) -> str:
    """The file of a one-file recording, else the recording id (what a message names)."""
    sources = recording.sources
    return sources[0].source if len(sources) == 1 and sources[0].type == "file" else recording.id


def wav_promised_frames(path: str | Path) -> int | None:
    """Frames the ``data`` chunk of a RIFF/WAVE file declares; ``None`` for other files or an unsized chunk.

    Streaming writers leave the size at 0 or 0xFFFFFFFF (and RF64 keeps it elsewhere): no promise then.
    """
    with open(path, "rb") as file:
        head = file.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = file.read(8)
            if len(chunk) < 8:
                return None
            kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if kind == b"fmt ":
                fmt = file.read(size + (size & 1))
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
            elif kind == b"data":
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                file.seek(size + (size & 1), 1)


def _scan_file(path: str) -> tuple[_Scan, int, int, str]:
    """Decode ``path`` block by block: (scan, sample rate, frames its header promises, format)."""
    scan = _Scan()
    with soundfile.SoundFile(path) as audio:
        for block in audio.blocks(blocksize=BLOCK_FRAMES, dtype="float32", always_2d=True):
            scan.add(block)
        rate, promised, kind = audio.samplerate, audio.frames, audio.format
    if kind in ("WAV", "WAVEX"):
        promised = wav_promised_frames(path) or promised
    return scan, rate, promised, kind


def _scan_lhotse(recording: Recording) -> _Scan:
    """Decode through Lhotse (any source type or format it reads)."""
    scan = _Scan()
    scan.add(recording.load_audio().T)  # (C, T) -> (T, C)
    return scan


def _one_line(error: Exception) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines()[:2] if line.strip())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def audio_problems(recording: Recording, min_duration: float = MIN_DURATION) -> list[str]:
    """Why ``recording`` cannot be trained on (empty when it is fine), after decoding it once.

    Args:
        recording: a Lhotse recording (a one-file recording is read with soundfile, anything else with Lhotse).
        min_duration: shortest accepted duration in seconds.
    """
    path, rate, promised, kind = recording_path(recording), recording.sampling_rate, None, ""
    try:
        scan, rate, promised, kind = _scan_file(path)
    except Exception as error:  # not a file soundfile reads (opus, m4a, a URL ...): Lhotse's backends try
        try:
            scan = _scan_lhotse(recording)
        except Exception:
            return [f"cannot decode ({_one_line(error)})"]  # soundfile's reason is the shorter one
    problems = []
    if rate != recording.sampling_rate:
        problems.append(f"sample rate {rate} Hz but the manifest says {recording.sampling_rate} Hz")
    tolerance = 0 if not kind or kind in EXACT_FORMATS else round(LOSSY_TOLERANCE * rate)
    if promised is not None and abs(promised - scan.frames) > tolerance:
        what = "truncated: its header promises" if scan.frames < promised else "its header promises"
        problems.append(f"{what} {promised / rate:.3f} s ({promised} frames), decoded {scan.frames / rate:.3f} s")
    elif abs(recording.num_samples - scan.frames) > tolerance:
        problems.append(f"the manifest says {recording.num_samples} frames, decoded {scan.frames}")
    if scan.nonfinite:
        problems.append(f"{scan.nonfinite} non-finite samples (NaN or inf)")
    if scan.frames < min_duration * rate:
        problems.append(f"{scan.frames / rate:.3f} s is shorter than min_duration {min_duration} s")
    if scan.frames and scan.peak < SILENCE_PEAK:
        problems.append(f"silent throughout (peak {scan.peak:.1e} < {SILENCE_PEAK:.0e})")
    return problems


def screen_recordings(
    split: str, recordings: Iterable[Recording], min_duration: float = MIN_DURATION
) -> list[Rejection]:
    """``audio_problems`` of every recording of one split, as rejections (empty when all pass), under a progress
    bar (the bad ones counted beside it).

    Args:
        split: the split name recorded in each rejection.
        recordings: the split's recordings.
        min_duration: shortest accepted duration in seconds.
    """
    rejected = []
    with progress_bar(recordings, desc=f"{split}: check audio", unit="file") as bar:
        for recording in bar:
            problems = audio_problems(recording, min_duration)
            if problems:
                rejected.append(Rejection(split, recording.id, recording_path(recording), "; ".join(problems)))
                bar.set_postfix(bad=len(rejected), refresh=False)
    return rejected
