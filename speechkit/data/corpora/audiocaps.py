"""AudioCaps (Kim et al., "AudioCaps: Generating Captions for Audios in the Wild", NAACL 2019): 10 s AudioSet clips.

``speechkit prepare audiocaps <audiocaps_dir> <out_dir> [--skip_missing]``. Lhotse has no AudioCaps recipe, and the
audio is not distributed: the user downloads it from YouTube (e.g. with ``aac-datasets``). The folder holds the
official ``train.csv``, ``val.csv``, ``test.csv`` (columns ``audiocap_id, youtube_id, start_time, caption``; one
row per caption) and the audio of each in a folder ``train/``, ``val/``, ``test/`` (or ``audio/<split>/``, or
``audio_32000Hz/<split>/`` as ``aac-datasets`` writes it) whose file names start with the 11-character YouTube id
(``{youtube_id}.flac``, ``{youtube_id}_{start}_{end}.flac`` ...). Rows are grouped by YouTube id: five captions per
audio in val and test, usually one in train. Splits: train -> train, val -> dev, test -> test. Cut ids are the
audio file stems; ``custom`` keeps ``audiocap_ids``, ``youtube_id`` and ``start_time``.

Videos disappear from YouTube, so some audio is usually missing: that is an error naming the count and the first
ids, or with ``--skip_missing`` those audios are left out and their count and ids logged (never silently).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from lhotse import CutSet

from speechkit.data.corpora.base import open_target, require_dir, write_corpus
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.data.corpora.clotho import captioned_split
from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)

SPLITS = {"train": "train", "val": "dev", "test": "test"}
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
YOUTUBE_ID_LENGTH = 11
AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a")


def read_audiocaps_csv(path: Path) -> dict[str, dict]:
    """``youtube_id -> {"start_time", "captions", "audiocap_ids"}`` in file order; errors name the row."""
    grouped: dict[str, dict] = {}
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SpeechkitError(f"audiocaps: {path}: missing column(s) {missing}; found {reader.fieldnames}")
        for number, row in enumerate(reader, start=2):
            caption, video = (row["caption"] or "").strip(), row["youtube_id"] or ""
            if not caption or len(video) != YOUTUBE_ID_LENGTH:
                raise SpeechkitError(f"audiocaps: {path}:{number}: expected an 11-character youtube_id and a caption, "
                                     f"got {row}")
            entry = grouped.setdefault(video, {"start_time": row["start_time"], "captions": [], "audiocap_ids": []})
            entry["captions"].append(caption)
            entry["audiocap_ids"].append(row["audiocap_id"])
    return grouped


def audio_folder(root: Path, split: str) -> Path:
    for candidate in (root / split, root / "audio" / split, root / "audio_32000Hz" / split):
        if candidate.is_dir():
            return candidate
    raise SpeechkitError(f"audiocaps: no audio folder for {split} under {root} (expected {split}/, audio/{split}/ "
                         f"or audio_32000Hz/{split}/)")


def audio_by_video(folder: Path) -> dict[str, Path]:
    """YouTube id (the first 11 characters of the file name) -> audio file; two files of one id are an error."""
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in AUDIO_SUFFIXES:
            video = path.name[:YOUTUBE_ID_LENGTH]
            if video in found:
                raise SpeechkitError(f"audiocaps: {found[video]} and {path} are both audio of YouTube id {video!r}")
            found[video] = path
    return found


def prepare(
    source: str | Path,
    out_dir: str | Path,
    skip_missing: bool = False,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Write AudioCaps manifests (train/dev/test); returns ``{split: CutSet}``.

    Args:
        source: the folder with ``train.csv``, ``val.csv``, ``test.csv`` and the audio folders.
        out_dir: where the manifests are written (atomically).
        skip_missing: leave out (and log) audios whose file is missing instead of refusing.
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out unreadable or too short audio (listed in ``rejected.jsonl``).
        min_duration: shortest accepted clip, in seconds.

    Examples:
        speechkit prepare audiocaps data/AUDIOCAPS out/audiocaps --skip_missing
    """
    target = open_target(out_dir, "audiocaps", source, {"skip_missing": skip_missing}, overwrite=overwrite,
                         skip_bad=skip_bad, min_duration=min_duration)
    root = require_dir(source, "audiocaps").resolve()
    splits, unreadable = {}, []
    for name, split in SPLITS.items():
        if not (root / f"{name}.csv").is_file():
            raise SpeechkitError(f"audiocaps: {root / f'{name}.csv'} does not exist; expected AudioCaps' CSV files")
        rows = read_audiocaps_csv(root / f"{name}.csv")
        files = audio_by_video(audio_folder(root, name))
        absent = [video for video in rows if video not in files]
        if absent and not skip_missing:
            raise SpeechkitError(f"audiocaps: {len(absent)} of {len(rows)} {name} audios have no file in "
                                 f"{audio_folder(root, name)} (first: {absent[:3]}); --skip_missing leaves them out")
        if absent:
            log.warning("audiocaps: %s: left out %d of %d audios without a file: %s", name, len(absent), len(rows),
                        ", ".join(absent))
        items = [(files[video], row["captions"], {"audiocap_ids": row["audiocap_ids"], "youtube_id": video,
                                                   "start_time": row["start_time"]})
                 for video, row in rows.items() if video in files]
        splits[split] = captioned_split(target, split, items, unreadable)
    return write_corpus(target, splits, unreadable)
