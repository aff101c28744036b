"""Spoken questions with spoken answers, built from SLURP text and spoken by eSpeak NG (for speech-out LMs).

``speechkit prepare spoken_qa_synth <slurp_dir> <out_dir> [--kinds [scenario,readback]] [--max_train 400]
[--max_dev 40] [--max_test 40] [--snr 5] [--semitones 4] [--seed 0] [--speakers 4]``

The manifest is :mod:`speechkit.data.spoken_answers`' (one cut per spoken prompt; supervision ``custom`` has
``answer`` and ``answer_audio``), for *Continuous Speech Tokens Makes LLMs Robust Multi-Modality Learners*
(Flow-Omni, Yuan et al. 2024, section 4: robustness to noisy and high-pitched prompts). Pairs are derived
mechanically from each SLURP record (``kinds``):

- ``scenario``: prompt "<sentence>. what is this about?" -> answer the scenario's words ("calendar", "smart home");
- ``readback``: prompt "repeat after me. <sentence>" -> answer "<sentence>".

The prompt text is the supervision's ``text``. Prompts are spoken by ``--speakers`` drawn speaker styles (as the
``synthetic`` corpus draws them); every answer by one fixed voice (``ANSWER_STYLE``), clean. Splits: distinct
sentences of SLURP's ``devel.jsonl`` shuffled by ``seed`` -> ``dev`` (the first ``max_dev``) and ``train`` (the next
``max_train``), of ``test.jsonl`` (sentences not in train or dev) -> ``test`` (``max_test``). train and dev prompts
are clean; ``test`` has every prompt three times, ``custom["condition"]`` = ``clean``, ``noisy`` (pink noise at
``snr`` dB, :func:`speechkit.data.augment.mix_at_snr`) and ``pitch`` (shifted up by ``semitones``,
:func:`speechkit.data.augment.shift_pitch`); cut ids ``qa-<kind>-<slurp_id>[-<condition>]``. Audio is 16 kHz FLAC
under ``<out_dir>/audio`` (cached: a second run reuses every file); manifests are written atomically
(``base.write_corpus``).
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSet

from speechkit.data.augment import mix_at_snr, shift_pitch
from speechkit.data.corpora.base import Target, open_target, require_dir, whole_recording_supervision, write_corpus
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.data.corpora.scenes_synth import colored_noise
from speechkit.data.corpora.slurp_synth import FILES, read_records
from speechkit.data.corpora.synthetic import MAX_CHARS, text_problems
from speechkit.data.synth import SpeakerStyle, Synthesizer, draw_styles, synthesize_to_file
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar

Kind = Literal["scenario", "readback"]
CONDITIONS = ("clean", "noisy", "pitch")
SAMPLE_RATE = 16000
ANSWER_STYLE = SpeakerStyle("en", "m3", 160, 50, 50)  # the one answer voice
SCENARIO_WORDS = {"iot": "smart home", "qa": "questions", "datetime": "date and time", "takeaway": "take away"}


def prompt_and_answer(kind: str, sentence: str, scenario: str) -> tuple[str, str]:
    """The prompt text and answer text of one SLURP sentence for a task ``kind``."""
    if kind == "scenario":
        return f"{sentence}. what is this about?", SCENARIO_WORDS.get(scenario, scenario.replace("_", " "))
    if kind == "readback":
        return f"repeat after me. {sentence}", sentence
    raise SpeechkitError(f"spoken_qa_synth: unknown kind {kind!r}; expected scenario or readback")


def split_records(devel: list[dict], test: list[dict], max_train: int, max_dev: int, max_test: int,
                  seed: int) -> dict[str, list[dict]]:
    """``{split: records}``: one record per distinct sentence, drawn by ``seed`` (see the module docstring)."""
    def distinct(records: list[dict], exclude: set[str]) -> list[dict]:
        first = {}
        for record in records:
            if record["sentence"] not in exclude:
                first.setdefault(record["sentence"], record)
        chosen = list(first.values())
        random.Random(seed).shuffle(chosen)
        return chosen

    pool = distinct(devel, set())
    if len(pool) < max_dev + max_train:
        raise SpeechkitError(f"spoken_qa_synth: devel.jsonl has {len(pool)} distinct sentences, fewer than "
                             f"max_dev + max_train = {max_dev + max_train}")
    splits = {"train": pool[max_dev: max_dev + max_train], "dev": pool[:max_dev]}
    tests = distinct(test, {r["sentence"] for r in pool[: max_dev + max_train]})
    if len(tests) < max_test:
        raise SpeechkitError(f"spoken_qa_synth: test.jsonl has {len(tests)} new distinct sentences, fewer than "
                             f"max_test = {max_test}")
    splits["test"] = tests[:max_test]
    return splits


def condition_audio(clean: Path, condition: str, snr: float, semitones: int, seed: int) -> Path:
    """The ``noisy`` or ``pitch`` version of a clean prompt file, cached beside it (its name holds the settings)."""
    if condition == "clean":
        return clean
    suffix = f"snr{snr:g}_s{seed}" if condition == "noisy" else f"pitch{semitones:+g}"
    path = clean.with_name(f"{clean.stem}_{suffix}.flac")
    if path.is_file():
        return path
    audio, rate = sf.read(clean, dtype="float32")
    if condition == "noisy":
        rng = np.random.default_rng([seed, zlib.crc32(clean.stem.encode())])
        audio = mix_at_snr(audio, colored_noise("pink", len(audio), rng), snr)
    else:
        audio = shift_pitch(audio, rate, semitones)
    partial = path.with_name(f".{path.name}.partial")
    sf.write(partial, audio, rate, subtype="PCM_16", format="FLAC")
    partial.replace(path)
    return path


def prepare(
    source: str | Path,
    out_dir: str | Path,
    kinds: Sequence[Kind] = ("scenario", "readback"),
    max_train: int = 400,
    max_dev: int = 40,
    max_test: int = 40,
    snr: float = 5.0,
    semitones: int = 4,
    seed: int = 0,
    speakers: int = 4,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Write train/dev/test spoken question -> spoken answer manifests; returns ``{split: CutSet}``.

    Args:
        source: SLURP's folder with ``devel.jsonl`` and ``test.jsonl``.
        out_dir: manifest folder (audio under ``<out_dir>/audio``).
        kinds: the question kinds, each giving one prompt per sentence (``scenario``, ``readback``).
        max_train: sentences in train (from devel).
        max_dev: sentences in dev (from devel).
        max_test: sentences in test (from test; each prompt clean, noisy and pitch-shifted).
        snr: signal-to-noise ratio of the noisy test prompts, in dB.
        semitones: pitch shift of the pitch-shifted test prompts, whole semitones (positive: higher; not 0).
        seed: draws the sentences, the prompt speakers and the noise.
        speakers: distinct prompt speaker styles.
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out clips that fail the audio checks (listed in ``rejected.jsonl``).
        min_duration: shortest accepted clip, in seconds.

    Examples:
        speechkit prepare spoken_qa_synth $SPEECHKIT_DATA/slurp exp/flow_omni/data --max_train 400
    """
    kinds = list(dict.fromkeys(kinds))
    options = dict(kinds=kinds, max_train=max_train, max_dev=max_dev, max_test=max_test, snr=snr,
                   semitones=semitones, seed=seed, speakers=speakers)
    target = open_target(out_dir, "spoken_qa_synth", source, options, overwrite=overwrite, skip_bad=skip_bad,
                         min_duration=min_duration)
    bad = [k for k in kinds if k not in ("scenario", "readback")]
    if not kinds or bad:
        raise SpeechkitError(f"spoken_qa_synth: kinds {kinds}: expected one or more of scenario, readback")
    if semitones == 0:
        raise SpeechkitError("spoken_qa_synth: semitones must not be 0 (the pitch condition would equal clean)")
    for name, value in (("max_train", max_train), ("max_dev", max_dev), ("max_test", max_test)):
        if value < 1:
            raise SpeechkitError(f"spoken_qa_synth: {name} must be >= 1, got {value}")
    folder = require_dir(source, "spoken_qa_synth")
    missing = [name for name in FILES if not (folder / name).is_file()]
    if missing:
        raise SpeechkitError(f"spoken_qa_synth: {folder} is not SLURP: missing {missing}")
    records = split_records(*(read_records(folder / name) for name in FILES), max_train, max_dev, max_test, seed)
    return _synthesize(target, records, kinds, snr, semitones, seed, speakers)


def _synthesize(target: Target, records: dict[str, list[dict]], kinds: list[str], snr: float, semitones: int,
                seed: int, speakers: int) -> dict[str, CutSet]:
    items = [(split, r, k) for split, rs in records.items() for r in rs for k in kinds]
    texts = [(f"{k} {r['slurp_id']}", text) for _, r, k in items for text in prompt_and_answer(k, r["sentence"],
                                                                                               r["scenario"])]
    problems = text_problems(texts, MAX_CHARS)
    if problems:
        raise SpeechkitError(f"spoken_qa_synth: prompt(s) or answer(s) {'; '.join(problems)}")
    synth, styles = Synthesizer(), draw_styles("en", speakers, seed)
    rng, audio_dir = random.Random(f"{seed}-speaker-of-prompt"), target.out_dir / "audio"
    splits: dict[str, tuple[list, list]] = {}
    with progress_bar(items, desc="spoken_qa_synth: synthesize", unit="pair") as bar:
        for split, record, kind in bar:
            prompt, answer = prompt_and_answer(kind, record["sentence"], record["scenario"])
            style = styles[rng.randrange(len(styles))]
            clean = synthesize_to_file(synth, prompt, style, audio_dir, SAMPLE_RATE)
            answer_path = synthesize_to_file(synth, answer, ANSWER_STYLE, audio_dir, SAMPLE_RATE)
            for condition in CONDITIONS if split == "test" else ("clean",):
                cut_id = f"qa-{kind}-{record['slurp_id']}" + (f"-{condition}" if split == "test" else "")
                recording = Recording.from_file(condition_audio(clean, condition, snr, semitones, seed),
                                                recording_id=cut_id)
                custom = {"answer": answer, "answer_audio": str(answer_path.resolve()), "kind": kind,
                          "condition": condition, "slurp_id": record["slurp_id"], "scenario": record["scenario"]}
                recs, sups = splits.setdefault(split, ([], []))
                recs.append(recording)
                sups.append(whole_recording_supervision(recording, prompt, "en", style.name, custom))
    return write_corpus(target, {s: (RecordingSet.from_recordings(r), SupervisionSet.from_segments(u))
                                 for s, (r, u) in splits.items()})
