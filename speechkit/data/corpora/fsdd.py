"""Free Spoken Digit Dataset (FSDD): 3,000 recordings of the digits 0-9 by 6 speakers, 8 kHz mono WAV.

File names are ``{digit}_{speaker}_{take}.wav``. Splits follow the usual convention with a dev set carved out of
train: test = takes 0-4 (300 cuts), dev = takes 5-9 (300 cuts), train = takes 10-49 (2,400 cuts). The text of a
cut is the digit's English word ("seven"); audio stays at 8 kHz in the manifests and is resampled on load.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from lhotse import Recording, RecordingSet, SupervisionSet

from speechkit.data.corpora.base import require_dir, whole_recording_supervision, write_splits
from speechkit.errors import SpeechkitError

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FILE_PATTERN = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def split_of_take(take: int) -> str:
    """test = takes 0-4, dev = takes 5-9, train = the rest."""
    return "test" if take < 5 else "dev" if take < 10 else "train"


def recordings_dir(source_dir: Path) -> Path:
    """FSDD's ``recordings/`` folder (the source may be the corpus root or ``recordings/`` itself)."""
    for candidate in (source_dir / "recordings", source_dir):
        if any(candidate.glob("*.wav")):
            return candidate
    raise SpeechkitError(
        f"fsdd: {source_dir} is not the Free Spoken Digit Dataset: no recordings/*.wav "
        "named {digit}_{speaker}_{take}.wav"
    )


def prepare(source_dir: str | Path, out_dir: str | Path) -> dict:
    """Write FSDD manifests for train/dev/test; returns ``{split: CutSet}``.

    Args:
        source_dir: the FSDD folder (holding ``recordings/``).
        out_dir: where ``{recordings,supervisions,cuts}_<split>.jsonl.gz`` are written.
    """
    folder = recordings_dir(require_dir(source_dir, "fsdd").resolve())
    splits: dict[str, tuple[list, list]] = {"train": ([], []), "dev": ([], []), "test": ([], [])}
    for path in sorted(folder.glob("*.wav")):
        match = FILE_PATTERN.match(path.name)
        if match is None:
            raise SpeechkitError(f"fsdd: unexpected file {path}: expected {{digit}}_{{speaker}}_{{take}}.wav")
        digit, speaker, take = int(match[1]), match[2], int(match[3])
        try:
            recording = Recording.from_file(path, recording_id=path.stem)
        except Exception as error:  # soundfile raises several types for corrupt audio
            raise SpeechkitError(f"fsdd: cannot read audio file {path}: {error}") from error
        supervision = whole_recording_supervision(
            recording, DIGIT_WORDS[digit], "en", speaker, custom={"digit": digit, "take": take}
        )
        recs, sups = splits[split_of_take(take)]
        recs.append(recording)
        sups.append(supervision)
    return write_splits(
        out_dir,
        {
            name: (RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups))
            for name, (recs, sups) in splits.items()
        },
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """FSDD takes no options beyond the source and output folders."""
