"""Multi30k English captions with synthesized speech and their German/French/Czech translations.

``speechkit prepare multi30k_synth <multi30k_dir> <out_dir> [--max-train 1000] [--max-dev 200] [--max-test 200]
[--seed 0] [--speakers 4] [--sample-rate 16000]``

The source folder holds ``{train,val,test_2016_flickr}.{en,de,fr,cs}.gz`` (29,000 / 1,014 / 1,000 lines, aligned
across languages). Splits: ``train`` <- train, ``dev`` <- val, ``test`` <- test_2016_flickr; each capped by its
``--max-*`` option (0 = all) through a seeded sample that keeps file order. The English sentence is the text;
``supervision.custom`` holds ``{"de": ..., "fr": ..., "cs": ..., "line": <0-based line>}``. Cut ids are
``multi30k-<split>-<line>``. Synthesis and caching are those of the ``synthetic`` corpus.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

from lhotse import CutSet

from speechkit.data.corpora.base import open_target, require_dir
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.data.corpora.synthetic import MAX_CHARS, SampleRate, Utterance, synthesize_splits
from speechkit.errors import SpeechkitError

PARTS = {"train": "train", "dev": "val", "test": "test_2016_flickr"}
LANGUAGES = ("en", "de", "fr", "cs")
TRANSLATIONS = ("de", "fr", "cs")


def read_part(folder: Path, part: str) -> dict[str, list[str]]:
    """``{language: lines}`` of one Multi30k part, checked to be aligned."""
    lines = {}
    for language in LANGUAGES:
        path = folder / f"{part}.{language}.gz"
        if not path.is_file():
            raise SpeechkitError(f"multi30k_synth: {folder} is not Multi30k: missing {path.name}")
        with gzip.open(path, "rt", encoding="utf-8-sig") as file:
            lines[language] = file.read().splitlines()
    counts = {language: len(text) for language, text in lines.items()}
    if len(set(counts.values())) != 1:
        raise SpeechkitError(f"multi30k_synth: {part}.*.gz are not aligned: line counts {counts}")
    return lines


def part_utterances(lines: dict[str, list[str]], split: str, limit: int, rng: random.Random) -> list[Utterance]:
    """The (sampled) lines of one part as utterances; an empty English line is an error naming it."""
    indices = range(len(lines["en"]))
    if limit:
        indices = sorted(rng.sample(indices, min(limit, len(indices))))
    utterances = []
    for i in indices:
        if not lines["en"][i].strip():
            raise SpeechkitError(f"multi30k_synth: {PARTS[split]}.en.gz line {i + 1} is empty")
        custom = {language: lines[language][i] for language in TRANSLATIONS} | {"line": i}
        utterances.append(Utterance(f"multi30k-{split}-{i:05d}", lines["en"][i].strip(), split, custom))
    return utterances


def prepare(
    source: str | Path,
    out_dir: str | Path,
    max_train: int = 1000,
    max_dev: int = 200,
    max_test: int = 200,
    seed: int = 0,
    speakers: int = 4,
    sample_rate: SampleRate = 16000,
    max_chars: int = MAX_CHARS,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Synthesize Multi30k English sentences and write train/dev/test manifests; returns ``{split: CutSet}``.

    Args:
        source: folder with ``{train,val,test_2016_flickr}.{en,de,fr,cs}.gz``.
        out_dir: manifest folder (audio under ``<out_dir>/audio``).
        max_train: utterances drawn from train (0 = all 29,000).
        max_dev: utterances drawn from val (0 = all 1,014).
        max_test: utterances drawn from test_2016_flickr (0 = all 1,000).
        seed: draws the samples and the speakers.
        speakers: number of distinct synthetic speakers.
        sample_rate: FLAC rate, 16000 or 22050.
        max_chars: longest accepted sentence in characters (an error names every longer one).
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out synthesized clips that fail the audio checks (listed in ``rejected.jsonl``).
        min_duration: shortest accepted clip, in seconds.

    Examples:
        speechkit prepare multi30k_synth data/multi30k out/multi30k --max_train 1000
    """
    options = dict(max_train=max_train, max_dev=max_dev, max_test=max_test, seed=seed, speakers=speakers,
                   sample_rate=sample_rate, max_chars=max_chars)
    target = open_target(
        out_dir, "multi30k_synth", source, options, overwrite=overwrite, skip_bad=skip_bad, min_duration=min_duration
    )
    folder = require_dir(source, "multi30k_synth")
    limits = {"train": max_train, "dev": max_dev, "test": max_test}
    for split, limit in limits.items():
        if limit < 0:
            raise SpeechkitError(f"max_{split} must be >= 0, got {limit}")
    rng = random.Random(seed)
    utterances = []
    for split, part in PARTS.items():
        utterances += part_utterances(read_part(folder, part), split, limits[split], rng)
    return synthesize_splits(
        utterances, target, voice="en", speakers=speakers, seed=seed, sample_rate=sample_rate, max_chars=max_chars
    )
