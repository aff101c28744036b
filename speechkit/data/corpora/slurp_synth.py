"""SLURP text with synthesized English speech, for spoken language understanding.

``speechkit prepare slurp_synth <slurp_dir> <out_dir> [--max-utterances 1000] [--dev-fraction 0.1] [--seed 0]
[--speakers 4] [--sample-rate 16000]``

The source folder holds SLURP's ``devel.jsonl`` (2,033 records) and ``test.jsonl`` (2,974), one JSON record a line
with ``slurp_id``, ``sentence``, ``intent``, ``scenario``, ``action``. Splits: SLURP's ``devel`` -> ``train`` and
``dev`` (``--dev-fraction`` of its distinct sentences), SLURP's ``test`` -> ``test``. ``--max-utterances`` caps the
total (default 1,000, about 50 minutes of audio; 0 = all 5,007 records), taken from devel and test in proportion
to their sizes by a seeded sample that keeps file order. Cut ids are ``slurp-<slurp_id>``;
``supervision.custom`` carries ``intent``, ``scenario``, ``action``, ``slurp_id`` and ``sentence_annotation``.
Synthesis and audio caching are those of the ``synthetic`` corpus (``speechkit.data.corpora.synthetic``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lhotse import CutSet

from speechkit.data.corpora.base import open_target, require_dir
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.data.corpora.synthetic import (
    MAX_CHARS,
    SampleRate,
    Utterance,
    assign_splits,
    synthesize_splits,
)
from speechkit.errors import SpeechkitError

FILES = ("devel.jsonl", "test.jsonl")
REQUIRED_KEYS = ("slurp_id", "sentence", "intent", "scenario", "action")
CUSTOM_KEYS = ("intent", "scenario", "action", "slurp_id", "sentence_annotation")


def read_records(path: Path) -> list[dict]:
    """The JSON records of one SLURP file, each checked for the keys we use."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise SpeechkitError(f"slurp_synth: {path}:{number} is not JSON: {error}") from error
        missing = [key for key in REQUIRED_KEYS if key not in record]
        if missing:
            raise SpeechkitError(f"slurp_synth: {path}:{number} lacks key(s) {missing}; expected {list(REQUIRED_KEYS)}")
        records.append(record)
    return records


def sample_in_order(records: list[dict], count: int, rng: random.Random) -> list[dict]:
    """``count`` records drawn by ``rng``, in their file order."""
    return [records[i] for i in sorted(rng.sample(range(len(records)), min(count, len(records))))]


def prepare(
    source: str | Path,
    out_dir: str | Path,
    max_utterances: int = 1000,
    dev_fraction: float = 0.1,
    seed: int = 0,
    speakers: int = 4,
    sample_rate: SampleRate = 16000,
    max_chars: int = MAX_CHARS,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Synthesize SLURP sentences and write train/dev/test manifests; returns ``{split: CutSet}``.

    Args:
        source: folder with ``devel.jsonl`` and ``test.jsonl``.
        out_dir: manifest folder (audio under ``<out_dir>/audio``).
        max_utterances: total cap over all splits; 0 = every record.
        dev_fraction: share of devel's distinct sentences that go to dev.
        seed: draws the sample, the dev split and the speakers.
        speakers: number of distinct synthetic speakers.
        sample_rate: FLAC rate, 16000 or 22050.
        max_chars: longest accepted sentence in characters (an error names every longer one).
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out synthesized clips that fail the audio checks (listed in ``rejected.jsonl``).
        min_duration: shortest accepted clip, in seconds.

    Examples:
        speechkit prepare slurp_synth data/slurp out/slurp --max_utterances 1000
    """
    options = dict(max_utterances=max_utterances, dev_fraction=dev_fraction, seed=seed, speakers=speakers,
                   sample_rate=sample_rate, max_chars=max_chars)
    target = open_target(
        out_dir, "slurp_synth", source, options, overwrite=overwrite, skip_bad=skip_bad, min_duration=min_duration
    )
    folder = require_dir(source, "slurp_synth")
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise SpeechkitError(f"slurp_synth: {folder} is not SLURP: missing {missing}")
    if max_utterances < 0:
        raise SpeechkitError(f"max_utterances must be >= 0, got {max_utterances}")
    devel, test = (read_records(folder / name) for name in FILES)
    if max_utterances:
        rng = random.Random(seed)
        n_devel = round(max_utterances * len(devel) / (len(devel) + len(test)))
        devel, test = sample_in_order(devel, n_devel, rng), sample_in_order(test, max_utterances - n_devel, rng)
    devel_splits = assign_splits([r["sentence"] for r in devel], dev_fraction, 0.0, seed)
    utterances = [_utterance(r, split) for r, split in zip(devel, devel_splits)]
    utterances += [_utterance(r, "test") for r in test]
    return synthesize_splits(
        utterances, target, voice="en", speakers=speakers, seed=seed, sample_rate=sample_rate, max_chars=max_chars
    )


def _utterance(record: dict, split: str) -> Utterance:
    custom = {key: record[key] for key in CUSTOM_KEYS if key in record}
    return Utterance(f"slurp-{record['slurp_id']}", record["sentence"], split, custom)
