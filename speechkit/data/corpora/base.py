"""What every corpus importer shares: the manifest layout on disk and checks of the source folder.

An importer turns a corpus folder into Lhotse manifests
``<out_dir>/{recordings,supervisions,cuts}_<split>.jsonl.gz``, one triple per split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.utils import fastcopy

from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)

MANIFEST_KINDS = ("recordings", "supervisions", "cuts")


def manifest_path(out_dir: str | Path, kind: str, split: str) -> Path:
    """``<out_dir>/<kind>_<split>.jsonl.gz``, the one place the file naming lives."""
    if kind not in MANIFEST_KINDS:
        raise SpeechkitError(f"manifest kind {kind!r} is not one of {MANIFEST_KINDS}")
    return Path(out_dir) / f"{kind}_{split}.jsonl.gz"


def require_dir(path: str | Path, corpus: str) -> Path:
    """The source folder of ``corpus``, or an error naming it."""
    path = Path(path)
    if not path.is_dir():
        raise SpeechkitError(f"{corpus}: source folder {path} does not exist or is not a folder")
    return path


def whole_recording_supervision(
    recording: Recording, text: str, language: str, speaker: str, custom: dict | None = None
) -> SupervisionSegment:
    """One supervision spanning all of a single-utterance recording, with the recording's id."""
    return SupervisionSegment(
        id=recording.id, recording_id=recording.id, start=0.0, duration=recording.duration, channel=0,
        text=text, language=language, speaker=speaker, custom=custom,
    )


def write_split(
    out_dir: str | Path, split: str, recordings: RecordingSet, supervisions: SupervisionSet
) -> CutSet:
    """Validate one split and write its recordings, supervisions and cuts; returns the cuts (eager)."""
    if len(recordings) == 0:
        raise SpeechkitError(f"split {split!r} has no recordings")
    for sup in supervisions:
        if not sup.text or not sup.text.strip():
            raise SpeechkitError(f"supervision {sup.id!r} (split {split!r}) has an empty transcript")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recordings.to_file(manifest_path(out_dir, "recordings", split))
    supervisions.to_file(manifest_path(out_dir, "supervisions", split))
    cuts = CutSet.from_cuts(
        # A recording with one supervision gives its cut the supervision's id ("7_jackson_3"), so predictions
        # carry the corpus' own utterance ids; Lhotse's default would append "-0".
        fastcopy(cut, id=cut.supervisions[0].id) if len(cut.supervisions) == 1 else cut
        for cut in CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    )
    cuts.to_file(manifest_path(out_dir, "cuts", split))
    log.info("%s: %d cuts, %.1f min", split, len(cuts), sum(c.duration for c in cuts) / 60)
    return cuts


def write_splits(
    out_dir: str | Path, splits: Mapping[str, tuple[RecordingSet, SupervisionSet]]
) -> dict[str, CutSet]:
    """``write_split`` for each split; returns ``{split: cuts}``."""
    return {name: write_split(out_dir, name, recs, sups) for name, (recs, sups) in splits.items()}
