"""Clotho v2.1 (Drossos et al., "Clotho: an Audio Captioning Dataset", ICASSP 2020): 15-30 s clips, five captions each.

``speechkit prepare clotho <clotho_dir> <out_dir>``. Lhotse has no Clotho recipe. The folder is what Zenodo's
archives (or ``aac-datasets``) unpack: ``clotho_captions_{development,validation,evaluation}.csv`` (columns
``file_name, caption_1 ... caption_5``) anywhere below it, and the audio of each subset in a folder named
``development`` / ``validation`` / ``evaluation`` (or ``clotho_audio_<subset>``) below it. Splits: development ->
train (3,839 clips), validation -> dev (1,045), evaluation -> test (1,045); a subset whose CSV is absent is left
out (logged). Cut ids are the file stems; captions are stored as ``speechkit.data.captions`` says. A CSV row whose
audio file is missing, or with an empty caption, is an error naming the row.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

from lhotse import CutSet, RecordingSet, SupervisionSet

from speechkit.data.captions import caption_supervision_custom
from speechkit.data.corpora.base import (
    Target,
    open_target,
    read_recording,
    require_dir,
    whole_recording_supervision,
    write_corpus,
)
from speechkit.data.corpora.checks import MIN_DURATION, Rejection
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar

log = logging.getLogger(__name__)

SUBSETS = {"development": "train", "validation": "dev", "evaluation": "test"}
CAPTION_COLUMNS = tuple(f"caption_{i}" for i in range(1, 6))


def find_one(root: Path, patterns: Sequence[str], what: str) -> Path | None:
    """The one path below ``root`` matching the first pattern that matches; several are an error."""
    for pattern in patterns:
        found = sorted(root.glob(pattern))
        if len(found) > 1:
            raise SpeechkitError(f"{what}: several matches for {pattern} under {root}: {found[:3]}")
        if found:
            return found[0]
    return None


def read_caption_rows(path: Path, key: str, caption_columns: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``(key value, captions)`` per CSV row; a missing column or an empty caption is an error naming the row."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file)
        missing = [c for c in (key, *caption_columns) if c not in (reader.fieldnames or [])]
        if missing:
            raise SpeechkitError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}")
        rows = []
        for number, row in enumerate(reader, start=2):
            captions = [(row[c] or "").strip() for c in caption_columns]
            if not row[key] or not all(captions):
                raise SpeechkitError(f"{path}:{number}: empty {key} or caption in {row}")
            rows.append((row[key], captions))
    return rows


def captioned_split(target: Target, split: str, items: Sequence[tuple[Path, list[str], dict]],
                    unreadable: list[Rejection]) -> tuple[RecordingSet, SupervisionSet]:
    """Recordings and caption supervisions of ``(audio path, captions, extra custom)`` items (headers read)."""
    recordings, supervisions = [], []
    for path, captions, extra in progress_bar(items, desc=f"{target.corpus}: {split} headers", unit="file"):
        recording = read_recording(target, split, path, unreadable)
        if recording is None:
            continue
        recordings.append(recording)
        supervisions.append(whole_recording_supervision(recording, captions[0], "en", "unknown",
                                                        caption_supervision_custom(captions, **extra)))
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)


def prepare(
    source: str | Path,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Write Clotho manifests (train/dev/test from development/validation/evaluation); returns ``{split: CutSet}``.

    Args:
        source: the Clotho folder (CSV files and audio folders below it).
        out_dir: where the manifests are written (atomically).
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out unreadable or too short audio (listed in ``rejected.jsonl``).
        min_duration: shortest accepted clip, in seconds.

    Examples:
        speechkit prepare clotho data/CLOTHO_v2.1 out/clotho
    """
    target = open_target(out_dir, "clotho", source, overwrite=overwrite, skip_bad=skip_bad, min_duration=min_duration)
    root = require_dir(source, "clotho").resolve()
    splits, unreadable = {}, []
    for subset, split in SUBSETS.items():
        csv_path = find_one(root, [f"clotho_captions_{subset}.csv", f"**/clotho_captions_{subset}.csv"], "clotho")
        if csv_path is None:
            log.warning("clotho: no clotho_captions_%s.csv under %s: split %s left out", subset, root, split)
            continue
        audio = find_one(root, [subset, f"clotho_audio_{subset}", f"**/{subset}", f"**/clotho_audio_{subset}"],
                         "clotho")
        if audio is None or not audio.is_dir():
            raise SpeechkitError(f"clotho: no audio folder {subset}/ (or clotho_audio_{subset}/) under {root}")
        items = []
        for name, captions in read_caption_rows(csv_path, "file_name", CAPTION_COLUMNS):
            if not (audio / name).is_file():
                raise SpeechkitError(f"clotho: {csv_path} lists {name!r} but {audio / name} does not exist")
            items.append((audio / name, captions, {}))
        splits[split] = captioned_split(target, split, items, unreadable)
    if not splits:
        raise SpeechkitError(f"clotho: {root} has no clotho_captions_<subset>.csv; expected Clotho v2.1")
    return write_corpus(target, splits, unreadable)
