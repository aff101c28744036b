"""Mozilla Common Voice: a thin wrapper over ``lhotse.recipes.prepare_commonvoice``.

``speechkit prepare commonvoice <cv_dir> <out_dir> --languages ps [ur ...] [--splits train dev test] [--num-jobs 1]``

Layout (what Lhotse 1.33 reads): ``<cv_dir>/<language>/{train,dev,test}.tsv`` and ``<cv_dir>/<language>/clips/*.mp3``,
e.g. ``cv-corpus-20.0-2024-12-06/ps/``. Languages must be named: Lhotse's ``languages="auto"`` only looks for its
own list of 23 languages and silently skips the rest (Pashto, Urdu ...). The TSV must have the columns
``path, sentence, client_id, gender, age, accents, variant`` (Lhotse reads each; releases before ``variant``
existed fail with a message naming the file). Before Lhotse runs, every TSV row's clip is checked to exist: Lhotse
itself would skip a missing clip with an INFO log line.

Output splits are Common Voice's (``train``, ``dev``, ``test``, or ``validated``/``other``/``invalidated`` if asked),
with all named languages merged into each split (``supervision.language`` tells them apart). Cut ids are the clip
names (``common_voice_ps_12345``). Lhotse's own ``cv-*`` manifests go to a temporary folder and are discarded.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Literal, Sequence, get_args

from lhotse import CutSet, RecordingSet, SupervisionSet

from speechkit.data.corpora.base import open_target, require_dir, write_corpus
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.errors import SpeechkitError

COLUMNS = ("path", "sentence", "client_id", "gender", "age", "accents", "variant")
DEFAULT_SPLITS = ("train", "dev", "test")
Split = Literal["train", "dev", "test", "validated", "invalidated", "other"]
ALL_SPLITS: tuple[str, ...] = get_args(Split)


def check_tsv(tsv: Path) -> int:
    """Rows of one split's TSV, after checking its columns and that every clip exists."""
    if not tsv.is_file():
        raise SpeechkitError(f"commonvoice: missing {tsv} (expected <source>/<language>/<split>.tsv)")
    with open(tsv, encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)  # as Lhotse reads it
        rows, header = list(reader), reader.fieldnames or []
    missing_columns = [column for column in COLUMNS if column not in header]
    if missing_columns:
        raise SpeechkitError(f"commonvoice: {tsv} lacks column(s) {missing_columns}; Lhotse 1.33 reads {list(COLUMNS)}")
    missing = [row["path"] for row in rows if not (tsv.parent / "clips" / row["path"]).is_file()]
    if missing:
        raise SpeechkitError(
            f"commonvoice: {len(missing)} clip(s) listed in {tsv} are missing, e.g. {tsv.parent / 'clips' / missing[0]}"
        )
    return len(rows)


def _one_line(error: Exception) -> str:
    """Lhotse's audio errors span several lines; keep the ones that name the file and the reason."""
    return " ".join(line.strip() for line in str(error).splitlines()[:2])


def prepare(
    source: str | Path,
    out_dir: str | Path,
    languages: Sequence[str] = (),
    splits: Sequence[Split] = DEFAULT_SPLITS,
    num_jobs: int = 1,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Import Common Voice languages into ``{recordings,supervisions,cuts}_<split>.jsonl.gz``.

    Args:
        source: the release folder holding one folder per language (``cv-corpus-*/``).
        out_dir: manifest folder.
        languages: language folder names, e.g. ``["ps"]``; required ("auto" is refused, see module docstring).
        splits: Common Voice splits to import.
        num_jobs: Lhotse's audio-scanning processes.
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out clips that fail the audio checks (listed in ``rejected.jsonl``); a clip whose header
            Lhotse cannot read still stops the import.
        min_duration: shortest accepted clip, in seconds.

    Examples:
        speechkit prepare commonvoice $CV out/cv_ps --languages ps
        speechkit prepare commonvoice $CV out/cv_ur --languages ur --splits train dev
    """
    from lhotse.recipes import prepare_commonvoice

    languages = [languages] if isinstance(languages, str) else list(languages)
    if not languages or "auto" in languages:
        raise SpeechkitError("commonvoice: name the languages explicitly, e.g. languages=['ps'] (--languages ps)")
    unknown = [split for split in splits if split not in ALL_SPLITS]
    if unknown:
        raise SpeechkitError(f"commonvoice: unknown split(s) {unknown}; expected some of {list(ALL_SPLITS)}")
    folder = require_dir(source, "commonvoice").resolve()
    target = open_target(
        out_dir, "commonvoice", folder, {"languages": languages, "splits": list(splits)},
        overwrite=overwrite, skip_bad=skip_bad, min_duration=min_duration,
    )
    expected = {split: 0 for split in splits}
    for language in languages:
        if not (folder / language).is_dir():
            raise SpeechkitError(f"commonvoice: {folder} has no language folder {language}/")
        for split in splits:
            expected[split] += check_tsv(folder / language / f"{split}.tsv")
    with tempfile.TemporaryDirectory() as lhotse_dir:
        try:
            manifests = prepare_commonvoice(
                folder, lhotse_dir, languages=languages, splits=list(splits), num_jobs=num_jobs
            )
        except Exception as error:  # Lhotse raises AudioLoadingError, KeyError, AssertionError ...
            raise SpeechkitError(f"commonvoice: Lhotse failed on {folder}: {_one_line(error)}") from error
    return write_corpus(target, {split: _merge(manifests, languages, split, expected[split]) for split in splits})


def _merge(manifests: dict, languages: list[str], split: str, expected: int) -> tuple[RecordingSet, SupervisionSet]:
    """One split's recordings and supervisions over all languages; a count that shrank is an error."""
    recordings = [r for language in languages for r in manifests[language][split]["recordings"]]
    supervisions = [s for language in languages for s in manifests[language][split]["supervisions"]]
    if len(supervisions) != expected:
        raise SpeechkitError(
            f"commonvoice: {split}: {expected} TSV rows but {len(supervisions)} supervisions after Lhotse"
        )
    return RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions)
