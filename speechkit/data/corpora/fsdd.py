"""Free Spoken Digit Dataset (FSDD): 3,000 recordings of the digits 0-9 by 6 speakers, 8 kHz mono WAV.

File names are ``{digit}_{speaker}_{take}.wav``. Splits follow the usual convention with a dev set carved out of
train: test = takes 0-4 (300 cuts), dev = takes 5-9 (300 cuts), train = takes 10-49 (2,400 cuts). The text of a
cut is the digit's English word ("seven"); audio stays at 8 kHz in the manifests and is resampled on load.
The extension is matched in any case (``.wav``, ``.WAV``); other files in the folder are counted and logged.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet

from speechkit.data.corpora.base import (
    Target,
    read_recording,
    open_target,
    require_dir,
    whole_recording_supervision,
    write_corpus,
)
from speechkit.data.corpora.checks import MIN_DURATION, Rejection
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar

log = logging.getLogger(__name__)

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FILE_PATTERN = re.compile(r"^(\d)_([a-z]+)_(\d+)\.(?i:wav)$")


def split_of_take(take: int) -> str:
    """test = takes 0-4, dev = takes 5-9, train = the rest."""
    return "test" if take < 5 else "dev" if take < 10 else "train"


def wav_files(folder: Path) -> list[Path]:
    """The ``.wav`` files of ``folder`` (extension in any case), sorted; other files are counted and logged."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    wavs = [p for p in files if p.suffix.lower() == ".wav"]
    if len(wavs) < len(files):
        others = [p.name for p in files if p.suffix.lower() != ".wav"]
        log.info("fsdd: ignored %d file(s) in %s that are not .wav, e.g. %s", len(others), folder, others[0])
    return wavs


def recordings_dir(source_dir: Path) -> Path:
    """FSDD's ``recordings/`` folder (the source may be the corpus root or ``recordings/`` itself)."""
    for candidate in (source_dir / "recordings", source_dir):
        if candidate.is_dir() and any(p.suffix.lower() == ".wav" for p in candidate.iterdir()):
            return candidate
    raise SpeechkitError(
        f"fsdd: {source_dir} is not the Free Spoken Digit Dataset: no recordings/*.wav "
        "named {digit}_{speaker}_{take}.wav"
    )


def prepare(
    source_dir: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Write FSDD manifests for train/dev/test; returns ``{split: CutSet}``.

    Args:
        source_dir: the FSDD folder (holding ``recordings/``).
        out_dir: where ``{recordings,supervisions,cuts}_<split>.jsonl.gz`` are written (atomically).
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out recordings that fail the audio checks (listed in ``rejected.jsonl``).
        min_duration: shortest accepted recording, in seconds.

    Examples:
        speechkit prepare fsdd ../shared/data/fsdd out/fsdd
        speechkit prepare fsdd ../shared/data/fsdd out/fsdd --skip_bad
    """
    target = open_target(
        out_dir, "fsdd", source_dir, overwrite=overwrite, skip_bad=skip_bad, min_duration=min_duration
    )
    folder = recordings_dir(require_dir(source_dir, "fsdd").resolve())
    splits, unreadable = read_splits(target, folder)
    return write_corpus(
        target,
        {
            name: (RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups))
            for name, (recs, sups) in splits.items()
        },
        unreadable,
    )


def read_splits(target: Target, folder: Path) -> tuple[dict[str, tuple[list, list]], list[Rejection]]:
    """``{split: (recordings, supervisions)}`` of the recordings in ``folder`` (headers read under a progress bar),
    and the unreadable files left out (``target.skip_bad``)."""
    splits: dict[str, tuple[list, list]] = {"train": ([], []), "dev": ([], []), "test": ([], [])}
    seen: dict[str, Path] = {}
    unreadable: list[Rejection] = []
    with progress_bar(wav_files(folder), desc="fsdd: read headers", unit="file") as paths:
        for path in paths:
            match = FILE_PATTERN.match(path.name)
            if match is None:
                raise SpeechkitError(f"fsdd: unexpected file {path}: expected {{digit}}_{{speaker}}_{{take}}.wav")
            if path.stem in seen:
                raise SpeechkitError(f"fsdd: {seen[path.stem]} and {path} are the same recording {path.stem!r}")
            seen[path.stem] = path
            digit, speaker, take = int(match[1]), match[2], int(match[3])
            recording = read_recording(target, split_of_take(take), path, unreadable)
            if recording is None:
                continue
            supervision = whole_recording_supervision(
                recording, DIGIT_WORDS[digit], "en", speaker, custom={"digit": digit, "take": take}
            )
            recs, sups = splits[split_of_take(take)]
            recs.append(recording)
            sups.append(supervision)
    return splits, unreadable
