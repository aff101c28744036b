"""What every corpus importer shares: the manifest layout on disk, the atomic write and the source checks.

An importer turns a corpus folder into Lhotse manifests
``<out_dir>/{recordings,supervisions,cuts}_<split>.jsonl.gz``, one triple per split, beside ``prepare.json`` (the
corpus, source and options that wrote them) and, with ``skip_bad``, ``rejected.jsonl`` (every recording left
out, with its reason). Audio paths in the manifests are absolute.

Writing is all or nothing (``write_corpus``). Every recording is first checked (``checks.audio_problems``); then
every split is written into a temporary sibling folder of ``<out_dir>`` (same filesystem), and only when all of
them succeeded do they replace the previous corpus: a new ``<out_dir>`` is that folder renamed into place (one
atomic rename); in an existing one (which may hold other files) the old ``prepare.json`` is removed, the new files
are moved in one by one with ``os.replace`` (each atomic, no copy), the old corpus' other manifests removed, and
``prepare.json`` moved in last. Any failure before that (bad audio, an empty split, a full disk) leaves
``<out_dir>`` byte for byte as it was. Only a crash (power loss, SIGKILL) within those few renames can leave a
mixture, and it then has no ``prepare.json``, so the next run refuses it without ``--overwrite``; such a crash
may also leave the hidden temporary folder ``.<out_dir name>.prepare-*`` beside ``<out_dir>``.
Other files in ``<out_dir>`` (a synthesized corpus' ``audio/`` cache, a user's notes) are never touched.

Re-running the same command (same corpus, source and options) rewrites its corpus; replacing a different one
(another source, other options, or manifests without ``prepare.json``) needs ``overwrite`` (``--overwrite``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource
from lhotse.utils import fastcopy

from speechkit.data.corpora.checks import MIN_DURATION, Rejection, screen_recordings
from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)

MANIFEST_KINDS = ("recordings", "supervisions", "cuts")
STAMP_FILE = "prepare.json"
REJECTED_FILE = "rejected.jsonl"
_MANIFEST_NAME = re.compile(r"^(recordings|supervisions|cuts)_.+\.jsonl\.gz$")


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
    out_dir: str | Path, split: str, recordings: RecordingSet, supervisions: SupervisionSet,
    cut_custom: Mapping[str, Mapping] | None = None,
) -> CutSet:
    """Validate one split and write its recordings, supervisions and cuts; returns the cuts (eager).

    ``cut_custom`` maps a recording id to custom fields of its cut (e.g. a mouth-video ``TemporalArray``)."""
    if len(recordings) == 0:
        raise SpeechkitError(f"split {split!r} has no recordings")
    for sup in supervisions:
        if not sup.text or not sup.text.strip():
            raise SpeechkitError(f"supervision {sup.id!r} (split {split!r}) has an empty transcript")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    recordings = RecordingSet.from_recordings(absolute_sources(r) for r in recordings)
    recordings.to_file(manifest_path(out_dir, "recordings", split))
    supervisions.to_file(manifest_path(out_dir, "supervisions", split))
    cuts = CutSet.from_cuts(
        # A recording with one supervision gives its cut the supervision's id ("7_jackson_3"), so predictions
        # carry the corpus' own utterance ids; Lhotse's default would append "-0".
        fastcopy(cut, id=cut.supervisions[0].id) if len(cut.supervisions) == 1 else cut
        for cut in CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    )
    if cut_custom:
        cuts = CutSet.from_cuts(
            fastcopy(cut, custom={**(cut.custom or {}), **cut_custom[cut.recording_id]})
            if cut.recording_id in cut_custom else cut
            for cut in cuts
        )
    cuts.to_file(manifest_path(out_dir, "cuts", split))
    log.info("%s: %d cuts, %.1f min", split, len(cuts), sum(c.duration for c in cuts) / 60)
    return cuts


def absolute_sources(recording: Recording) -> Recording:
    """``recording`` with every file source made absolute (relative to the working directory, as Lhotse reads it)."""
    if all(s.type != "file" or os.path.isabs(s.source) for s in recording.sources):
        return recording
    sources = [
        AudioSource(type=s.type, channels=s.channels, source=os.path.abspath(s.source)) if s.type == "file" else s
        for s in recording.sources
    ]
    return fastcopy(recording, sources=sources)


@dataclass(frozen=True)
class Target:
    """Where a corpus goes and what identifies it; made by ``open_target``.

    Args:
        out_dir: the absolute output folder.
        corpus: the importer's name (``fsdd``).
        source: the absolute source path (or a word such as ``numbers``).
        options: every option that changes the output, JSON-serializable.
        overwrite: whether a different corpus in ``out_dir`` may be replaced.
        skip_bad: skip bad recordings (listed in ``rejected.jsonl``) instead of refusing them.
        min_duration: shortest accepted recording, in seconds.
    """

    out_dir: Path
    corpus: str
    source: str
    options: dict = field(default_factory=dict)
    overwrite: bool = False
    skip_bad: bool = False
    min_duration: float = MIN_DURATION

    @property
    def identity(self) -> dict:
        """What ``prepare.json`` records and a re-run must match: corpus, source and options."""
        options = self.options | {"skip_bad": self.skip_bad, "min_duration": self.min_duration}
        identity = {"corpus": self.corpus, "source": self.source, "options": dict(sorted(options.items()))}
        return json.loads(json.dumps(identity))  # as read back from prepare.json (tuples -> lists)


def is_corpus_file(name: str) -> bool:
    """Whether a file name in an output folder belongs to a prepared corpus (replaced as a whole)."""
    return name in (STAMP_FILE, REJECTED_FILE) or _MANIFEST_NAME.match(name) is not None


def open_target(
    out_dir: str | Path,
    corpus: str,
    source: str | Path,
    options: Mapping | None = None,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> Target:
    """The target of an import, after checking that ``out_dir`` may receive it (call before any work).

    Args:
        out_dir: the output folder (need not exist).
        corpus: the importer's name.
        source: the source folder or file (made absolute), or a word such as ``numbers``.
        options: the importer's options that change its output.
        overwrite: allow replacing a different corpus.
        skip_bad: skip bad recordings instead of refusing them.
        min_duration: shortest accepted recording, in seconds (>= 0).
    """
    if not min_duration >= 0:
        raise SpeechkitError(f"min_duration must be >= 0 seconds, got {min_duration}")
    source = str(source)
    if Path(source).exists():
        source = os.path.abspath(source)
    target = Target(Path(os.path.abspath(out_dir)), corpus, source, dict(options or {}), overwrite, skip_bad,
                    float(min_duration))
    if target.out_dir.exists() and not target.out_dir.is_dir():
        raise SpeechkitError(f"{corpus}: output {target.out_dir} exists and is not a folder")
    _refuse_unwritable(target)
    if not overwrite:
        _refuse_a_different_corpus(target)
    return target


def _refuse_unwritable(target: Target) -> None:
    """Fail before the work when the output folder (or the nearest folder that exists above it) is read-only."""
    folder = target.out_dir.resolve()
    folders = [folder, folder.parent] if folder.is_dir() else [folder.parent]
    while not folders[-1].exists():
        folders[-1] = folders[-1].parent
    for path in folders:
        if not os.access(path, os.W_OK | os.X_OK):
            raise SpeechkitError(f"{target.corpus}: cannot write {target.out_dir}: {path} is not writable")


def _refuse_a_different_corpus(target: Target) -> None:
    out = target.out_dir
    if not out.is_dir():
        return
    present = sorted(p.name for p in out.iterdir() if is_corpus_file(p.name))
    if not present:
        return
    try:
        old = json.loads((out / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SpeechkitError(
            f"{out} already holds manifests ({present[0]} ...) with no readable {STAMP_FILE} saying what wrote "
            f"them; pass --overwrite (overwrite=True) to replace them, or choose another output folder"
        ) from None
    new = target.identity
    old = {key: old.get(key) for key in new}
    if old != new:
        raise SpeechkitError(
            f"{out} already holds a different corpus ({_difference(old, new)}); pass --overwrite "
            f"(overwrite=True) to replace it, or choose another output folder"
        )


def _difference(old: dict, new: dict) -> str:
    """The first differing field of two corpus identities, as ``key: old -> new``."""
    for key in ("corpus", "source"):
        if old[key] != new[key]:
            return f"{key}: {old[key]} -> {new[key]}"
    old_options, new_options = old["options"] or {}, new["options"]
    for key in sorted(set(old_options) | set(new_options)):
        if old_options.get(key) != new_options.get(key):
            return f"option {key}: {old_options.get(key)} -> {new_options.get(key)}"
    return "same fields"  # unreachable when old != new


def read_recording(target: Target, split: str, path: Path, unreadable: list[Rejection]) -> Recording | None:
    """``Recording.from_file(path)`` (id: the file stem); an unreadable file is an error naming it, or with
    ``target.skip_bad`` is added to ``unreadable`` (give that list to ``write_corpus``) and gives ``None``."""
    try:
        return Recording.from_file(path, recording_id=path.stem)
    except Exception as error:  # soundfile and Lhotse raise several types for corrupt audio
        reason = f"cannot read its header ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
    if not target.skip_bad:
        raise SpeechkitError(f"{target.corpus}: bad audio {path}: {reason}; --skip-bad (skip_bad=True) leaves it out")
    unreadable.append(Rejection(split, path.stem, str(path), reason))
    return None


def write_corpus(
    target: Target,
    splits: Mapping[str, tuple[RecordingSet, SupervisionSet]],
    unreadable: Sequence[Rejection] = (),
    cut_custom: Mapping[str, Mapping] | None = None,
) -> dict[str, CutSet]:
    """Check every recording, then write every split atomically into ``target.out_dir``; returns ``{split: cuts}``.

    Bad recordings are an error naming the file and the reason, or with ``target.skip_bad`` are left out with
    their supervisions and listed in ``rejected.jsonl``. See the module docstring for what is atomic.

    Args:
        target: where and what (from ``open_target``, called before the import's work).
        splits: ``{split: (recordings, supervisions)}``.
        unreadable: recordings the importer already left out (``read_recording`` with ``skip_bad``).
        cut_custom: recording id -> custom fields of its cut (``write_split``).
    """
    unread_splits = {r.split for r in unreadable}
    empty = [name for name, (recs, _) in splits.items() if len(recs) == 0 and name not in unread_splits]
    if empty:
        raise SpeechkitError(f"{target.corpus}: split {empty[0]!r} has no recordings in {target.source}")
    splits, rejected = _screen(target, splits, list(unreadable))
    parent = target.out_dir.resolve().parent if target.out_dir.exists() else target.out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.out_dir.name}.prepare-", dir=parent))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes it private; the corpus folder should not be
    except OSError as error:
        raise SpeechkitError(f"{target.corpus}: cannot write beside {target.out_dir}: {error}") from error
    try:
        try:
            cuts = _stage(target, staging, splits, rejected, cut_custom)
        except OSError as error:
            raise SpeechkitError(f"{target.corpus}: writing {target.out_dir} failed, it is unchanged: {error}") \
                from error
        try:
            _commit(staging, target.out_dir)
        except OSError as error:
            raise SpeechkitError(
                f"{target.corpus}: moving the new manifests into {target.out_dir} failed part way ({error}); it "
                f"has no {STAMP_FILE} now, so run the same command again with --overwrite"
            ) from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cuts


def _stage(
    target: Target, staging: Path, splits: Mapping[str, tuple[RecordingSet, SupervisionSet]], rejected: list[Rejection],
    cut_custom: Mapping[str, Mapping] | None = None,
) -> dict[str, CutSet]:
    """Write the whole corpus into ``staging`` (manifests, ``rejected.jsonl``, ``prepare.json``), synced to disk."""
    cuts = {name: write_split(staging, name, recs, sups, cut_custom) for name, (recs, sups) in splits.items()}
    if target.skip_bad:
        _write_rejected(staging / REJECTED_FILE, rejected)
    stamp = target.identity | {"splits": {name: len(c) for name, c in cuts.items()}, "rejected": len(rejected)}
    (staging / STAMP_FILE).write_text(json.dumps(stamp, indent=1) + "\n", encoding="utf-8")
    _sync_folder(staging)
    return cuts


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _screen(
    target: Target, splits: Mapping[str, tuple[RecordingSet, SupervisionSet]], unreadable: list[Rejection]
) -> tuple[dict[str, tuple[RecordingSet, SupervisionSet]], list[Rejection]]:
    """The splits without their bad recordings, and the rejections; an error unless ``skip_bad``."""
    rejected = unreadable + [
        r for name, (recs, _) in splits.items() for r in screen_recordings(name, recs, target.min_duration)
    ]
    if not rejected:
        return dict(splits), []
    if not target.skip_bad:
        first, more = rejected[0], len(rejected) - 1
        also = f" (and {more} more bad recording{'s' if more > 1 else ''})" if more else ""
        raise SpeechkitError(
            f"{target.corpus}: bad audio {first.path}: {first.reason}{also}; --skip-bad (skip_bad=True) leaves "
            f"bad recordings out and lists each in {REJECTED_FILE}"
        )
    log.warning(  # on stderr for `speechkit prepare`
        "%s: skipped %d bad recording(s), each listed with its reason in %s",
        target.corpus, len(rejected), target.out_dir / REJECTED_FILE,
    )
    bad = {(r.split, r.recording_id) for r in rejected}
    kept = {name: _without(name, recs, sups, bad) for name, (recs, sups) in splits.items()}
    for name, (recs, _) in kept.items():
        example = next((r for r in rejected if r.split == name), None)
        if len(recs) == 0 and example is not None:
            raise SpeechkitError(
                f"{target.corpus}: split {name!r}: every recording is bad, e.g. {example.path}: {example.reason}"
            )
    return kept, rejected


def _without(
    split: str, recordings: RecordingSet, supervisions: SupervisionSet, bad: set[tuple[str, str]]
) -> tuple[RecordingSet, SupervisionSet]:
    """One split without the recordings in ``bad`` and their supervisions."""
    kept = [r for r in recordings if (split, r.id) not in bad]
    sups = [s for s in supervisions if (split, s.recording_id) not in bad]
    return RecordingSet.from_recordings(kept), SupervisionSet.from_segments(sups)


def _write_rejected(path: Path, rejected: list[Rejection]) -> None:
    with open(path, "w", encoding="utf-8") as file:
        for rejection in rejected:
            file.write(json.dumps(rejection.to_dict(), ensure_ascii=False) + "\n")


def _sync_folder(folder: Path) -> None:
    """fsync every file of ``folder`` and the folder itself, so a rename publishes complete files."""
    for path in folder.iterdir():
        with open(path, "rb") as file:
            os.fsync(file.fileno())
    _sync_folder_entry(folder)


def _commit(staging: Path, out_dir: Path) -> None:
    """Publish the staged corpus: rename the folder into place, or move its files into an existing folder."""
    if not out_dir.exists():
        os.rename(staging, out_dir)
        _sync_folder_entry(out_dir.parent)
        return
    (out_dir / STAMP_FILE).unlink(missing_ok=True)  # a crash from here on leaves no stamp: the next run refuses
    new = {path.name for path in staging.iterdir()}
    for name in sorted(new - {STAMP_FILE}):
        os.replace(staging / name, out_dir / name)
    for old in out_dir.iterdir():
        if old.is_file() and is_corpus_file(old.name) and old.name not in new:
            old.unlink()  # a split or rejected.jsonl of the corpus being replaced
    os.replace(staging / STAMP_FILE, out_dir / STAMP_FILE)
    _sync_folder_entry(out_dir)


def _sync_folder_entry(folder: Path) -> None:
    """fsync a folder's entries (the names a rename changed)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
