"""MuST-C English -> X speech translation (Di Gangi et al., *MuST-C: a Multilingual Speech Translation Corpus*,
NAACL 2019), with the English source transcript kept.

``speechkit prepare mustc <MuST-C dir> <out_dir> --target_language de [--splits dev tst-COMMON ...]``

Layout (every release, ``en-<xx>/data/<split>/``): ``wav/<talk>.wav`` (one TED talk a file),
``txt/<split>.yaml`` (one ``{duration, offset, speaker_id, wav}`` per segment), ``txt/<split>.en`` and
``txt/<split>.<xx>`` (one line per segment, aligned with the YAML). ``<MuST-C dir>`` may be the folder holding
``en-<xx>/`` or ``en-<xx>/`` itself. Lhotse's ``prepare_must_c`` keeps only the translation; here
``supervision.text`` is the English transcript (CTC / CTC + OT pretraining read it), ``language`` is ``en`` and
``supervision.custom`` holds ``{<xx>: translation, "talk": <wav stem>}``, as ``multi30k_synth`` does, so the
``conf/st`` and ``conf/ctc_ot`` configs run on it with ``target_field: <xx>``. Cuts are one per segment (the talk
trimmed to the segment), with the segment id ``<talk>-<index>``. Unequal line counts, a missing talk, or a segment
past the end of its talk are errors naming the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml
from lhotse import CutSet, RecordingSet, SupervisionSegment, SupervisionSet

from speechkit.data.corpora.base import (
    manifest_path,
    open_target,
    read_recording,
    require_dir,
    write_corpus,
)
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.data.manifests import write_cuts_atomic
from speechkit.errors import SpeechkitError

SPLITS = ("train", "dev", "tst-COMMON", "tst-HE")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the train YAML has ~250,000 segments


def data_dir(source: Path, language: str) -> Path:
    """``<source>/en-<xx>/data`` or ``<source>/data`` (when ``source`` is ``en-<xx>``)."""
    for folder in (source / f"en-{language}" / "data", source / "data"):
        if folder.is_dir():
            return folder
    raise SpeechkitError(f"mustc: {source} is not MuST-C en-{language}: no en-{language}/data/ or data/ folder in it")


def read_segments(split_dir: Path, split: str, language: str) -> list[dict]:
    """The YAML segments of one split with their ``en`` and target lines, checked to be aligned."""
    txt = split_dir / "txt"
    files = {name: txt / f"{split}.{name}" for name in ("yaml", "en", language)}
    for path in files.values():
        if not path.is_file():
            raise SpeechkitError(f"mustc: missing {path}")
    segments = yaml.load(files["yaml"].read_text(encoding="utf-8"), Loader=_LOADER) or []
    lines = {name: files[name].read_text(encoding="utf-8").splitlines() for name in ("en", language)}
    counts = {files["yaml"].name: len(segments)} | {files[name].name: len(text) for name, text in lines.items()}
    if len(set(counts.values())) != 1:
        raise SpeechkitError(f"mustc: {txt} is not aligned: {counts} segments / lines")
    for index, segment in enumerate(segments):
        missing = {"duration", "offset", "wav"} - set(segment or {})
        if missing:
            raise SpeechkitError(f"mustc: {files['yaml']} segment {index + 1} lacks {sorted(missing)}")
        segment["en"], segment[language] = lines["en"][index].strip(), lines[language][index].strip()
    return segments


def split_manifests(target, split_dir: Path, split: str, language: str) -> tuple[RecordingSet, SupervisionSet]:
    """Recordings (one a talk) and supervisions (one a segment) of one split."""
    recordings, supervisions, counters = {}, [], {}
    for number, segment in enumerate(read_segments(split_dir, split, language), start=1):
        talk = Path(segment["wav"]).stem
        if talk not in recordings:
            path = split_dir / "wav" / segment["wav"]
            if not path.is_file():
                raise SpeechkitError(f"mustc: {split}.yaml segment {number} names {path}, which does not exist")
            recordings[talk] = read_recording(target, split, path, [])
        recording = recordings[talk]
        start, duration = float(segment["offset"]), float(segment["duration"])
        if start + duration > recording.duration + 0.01:
            raise SpeechkitError(f"mustc: {split}.yaml segment {number} ends at {start + duration:.2f} s, past the "
                                 f"end of {segment['wav']} ({recording.duration:.2f} s)")
        index = counters[talk] = counters.get(talk, -1) + 1
        supervisions.append(SupervisionSegment(
            id=f"{talk}-{index:05d}", recording_id=talk, start=start,
            duration=min(duration, recording.duration - start), channel=0, text=segment["en"], language="en",
            speaker=str(segment.get("speaker_id", talk)), custom={language: segment[language], "talk": talk},
        ))
    return RecordingSet.from_recordings(recordings.values()), SupervisionSet.from_segments(supervisions)


def trim_to_segments(out_dir: Path, split: str) -> CutSet:
    """Rewrite ``cuts_<split>`` with one cut per segment (``trim_to_supervisions``), atomically."""
    path = manifest_path(out_dir, "cuts", split)
    cuts = CutSet.from_file(path).trim_to_supervisions(keep_overlapping=False).to_eager()
    write_cuts_atomic(cuts, path)
    return cuts


def prepare(
    source: str | Path,
    out_dir: str | Path,
    target_language: str = "de",
    splits: Sequence[str] | None = None,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Import MuST-C en-<target_language> splits into ``{recordings,supervisions,cuts}_<split>.jsonl.gz``.

    Args:
        source: the MuST-C folder holding ``en-<xx>/`` (or ``en-<xx>/`` itself).
        out_dir: manifest folder.
        target_language: the ``<xx>`` of ``en-<xx>`` (de, es, fr, it, nl, pt, ro, ru, ...).
        splits: splits to import; default every one of train, dev, tst-COMMON, tst-HE present.
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out talks that fail the audio checks (listed in ``rejected.jsonl``).
        min_duration: shortest accepted talk, in seconds.

    Examples:
        speechkit prepare mustc data/MUSTC_v1.0 out/mustc_de --target_language de --splits dev tst-COMMON
    """
    folder = data_dir(require_dir(source, "mustc"), target_language)
    chosen = list(splits) if splits else [s for s in SPLITS if (folder / s).is_dir()]
    if not chosen:
        raise SpeechkitError(f"mustc: {folder} has none of the splits {list(SPLITS)}")
    for split in chosen:
        if not (folder / split).is_dir():
            raise SpeechkitError(f"mustc: {folder} has no split folder {split}/")
    target = open_target(out_dir, "mustc", folder, {"target_language": target_language, "splits": chosen},
                         overwrite=overwrite, skip_bad=skip_bad, min_duration=min_duration)
    manifests = {split: split_manifests(target, folder / split, split, target_language) for split in chosen}
    write_corpus(target, manifests)
    return {split: trim_to_segments(target.out_dir, split) for split in chosen}
