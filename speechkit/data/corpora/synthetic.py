"""Synthetic speech corpus: text (a file, one utterance a line, or generated numbers) spoken by eSpeak NG.

``speechkit prepare synthetic <text_file | numbers> <out_dir> [--voice en] [--num-utterances N] [--seed 0]
[--speakers 4] [--dev-fraction 0.1] [--test-fraction 0.1] [--sample-rate 16000] [--max-chars 400]``

- Source ``numbers``: ``--num-utterances`` distinct numbers 0-999,999 drawn from ``--seed``. For an English voice
  (``en``, ``en-us`` ...) the text is the number in words ("three hundred twelve"); for any other voice the text
  is the digits ("312") and eSpeak reads them in that language, so the transcript is the digit string.
- Source a text file: its non-blank lines (blank lines are counted and logged), the first ``--num-utterances`` of
  them if given. A UTF-8 byte order mark is dropped. A line with no letter or digit (``...``) or longer than
  ``--max-chars`` (default 400: about 27 s of English at the slowest speaker rate, under Whisper's 30 s; digits
  read longer than their characters) is an error naming every such line number, before anything is synthesized.
- A line ``transcript<TAB>spoken form`` has eSpeak read the spoken form while the transcript keeps the line's first
  column: a respelling in letters the voice knows (Pashto ټ read by the Urdu voice as ٹ) that leaves the target
  text as written. Splits go by transcript; the audio cache key and the length checks use what is spoken.
- Splits: by distinct text, so a text never lands in two splits (duplicated lines stay together); the fractions
  count distinct texts, and each split with a fraction > 0 gets at least one.
- Speakers: ``--speakers`` distinct ``SpeakerStyle`` s (variant m1-m8/f1-f5, rate, pitch, pitch range) drawn from
  the seed; each utterance gets one of them, also drawn from the seed. ``--test-speakers K`` (default 0): the last K
  styles speak only the test split and the others never do: a test set of unseen speakers and unseen texts.
  ``supervision.speaker`` is the style's name
  (``en+m3_r160_p45_g50``), ``supervision.language`` the voice name without its region (``en-us`` -> ``en``), or
  ``--language`` when given (a proxy voice reading another language: Persian ``fa`` reading Pashto ``ps``).
- Audio: written as 16-bit FLAC at ``--sample-rate`` (default 16,000 Hz, resampled from eSpeak's 22,050 Hz: what
  ASR models take, and 27 % fewer samples to store and load; 22050 keeps the native rate) under
  ``<out_dir>/audio/<hash>.flac``, the hash covering text, style, rate and eSpeak version: a second run reuses
  every file already there. Same options -> bit-identical audio and manifests (the manifests hold absolute audio
  paths, so two output folders differ only in that prefix). The audio cache lies outside the atomic write of the
  manifests (``base.write_corpus``): a run that fails after synthesizing keeps its files for the next run.

The helpers here (``Utterance``, ``assign_splits``, ``synthesize_splits``) are shared by
the other synthesized corpora (``slurp_synth``, ``multi30k_synth``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence, get_args

from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet

from speechkit.data.corpora.base import Target, open_target, whole_recording_supervision, write_corpus
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.data.synth import SpeakerStyle, Synthesizer, draw_styles, speakable, synthesize_to_file
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar

log = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
SampleRate = Literal[16000, 22050]
SAMPLE_RATES: tuple[int, ...] = get_args(SampleRate)
MAX_NUMBER = 999_999
# eSpeak speaks English at about 15 characters a second at the slowest drawn rate (140 wpm; measured on SLURP and
# Multi30k sentences), so 400 characters stay under Whisper's 30 s window. Longest lines: SLURP 365, Multi30k 205.
MAX_CHARS = 400
MAX_NAMED = 10  # line numbers or ids an error names before it only counts
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


@dataclass(frozen=True)
class Utterance:
    """One line of text to synthesize, its id, split and extra supervision fields."""

    id: str
    text: str
    split: str
    custom: dict = field(default_factory=dict, hash=False)
    spoken: str = ""  # what eSpeak reads when it differs from ``text`` (a respelling); "" = ``text``

    @property
    def speech(self) -> str:
        """The text eSpeak reads."""
        return self.spoken or self.text


def number_words(number: int) -> str:
    """English words of 0 <= number <= 999,999 ("three hundred twelve"; no "and", no hyphens)."""
    # Written by hand: no installed library spells numbers (num2words is not a dependency).
    if not 0 <= number <= MAX_NUMBER:
        raise SpeechkitError(f"number_words takes 0..{MAX_NUMBER}, got {number}")
    if number < 20:
        return _ONES[number]
    if number < 100:
        return _TENS[number // 10] + ("" if number % 10 == 0 else " " + _ONES[number % 10])
    if number < 1000:
        rest = number % 100
        return _ONES[number // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = number % 1000
    return number_words(number // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def draw_numbers(count: int, seed: int) -> list[int]:
    """``count`` distinct numbers; the digit count (1-6) is drawn first so short and long numbers both appear."""
    if count > MAX_NUMBER + 1:
        raise SpeechkitError(f"num_utterances: at most {MAX_NUMBER + 1} distinct numbers, got {count}")
    rng, numbers, seen = random.Random(seed), [], set()
    while len(numbers) < count:
        digits = rng.randint(1, 6)
        number = rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)
        if number not in seen:
            seen.add(number)
            numbers.append(number)
    return numbers


def language_of_voice(voice: str) -> str:
    """The language code of an eSpeak voice name: ``en-us`` -> ``en``, ``cmn`` -> ``cmn``."""
    return voice.split("+")[0].split("-")[0]


def assign_splits(texts: Sequence[str], dev_fraction: float, test_fraction: float, seed: int) -> list[str]:
    """The split of each text: distinct texts shuffled by ``seed``, first ``test_fraction`` -> test, then dev."""
    for name, value in (("dev_fraction", dev_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise SpeechkitError(f"{name} must be in [0, 1), got {value}")
    if dev_fraction + test_fraction >= 1.0:
        raise SpeechkitError(f"dev_fraction + test_fraction must be < 1, got {dev_fraction + test_fraction}")
    distinct = list(dict.fromkeys(texts))
    random.Random(seed).shuffle(distinct)
    sizes = [_split_size(len(distinct), f) for f in (test_fraction, dev_fraction)]
    if sum(sizes) >= len(distinct):
        raise SpeechkitError(
            f"{len(distinct)} distinct texts are too few for a train split "
            f"besides test ({sizes[0]}) and dev ({sizes[1]})"
        )
    split_of = {text: "test" for text in distinct[: sizes[0]]}
    split_of.update({text: "dev" for text in distinct[sizes[0] : sizes[0] + sizes[1]]})
    return [split_of.get(text, "train") for text in texts]


def speaker_assignment(splits: Sequence[str], speakers: int, test_speakers: int, seed: int) -> list[int]:
    """The speaker index of each utterance: test utterances from the last ``test_speakers``, others from the rest.

    With ``test_speakers=0`` every utterance draws from all speakers (the same draws as before the option existed).
    """
    if not 0 <= test_speakers < speakers:
        raise SpeechkitError(f"need 0 <= test_speakers < speakers, got test_speakers={test_speakers}, "
                             f"speakers={speakers}")
    rng, first_test = random.Random(f"{seed}-speaker-of-utterance"), speakers - test_speakers
    return [first_test + rng.randrange(test_speakers) if split == "test" and test_speakers
            else rng.randrange(first_test) for split in splits]


def split_spoken(text: str) -> tuple[str, str]:
    """``(transcript, spoken form)`` of a line ``transcript<TAB>spoken form``; ``(text, "")`` without a tab."""
    if "\t" not in text:
        return text, ""
    transcript, _, spoken = text.partition("\t")
    transcript, spoken = transcript.strip(), spoken.strip()
    if not transcript or not spoken or "\t" in spoken:
        raise SpeechkitError(f"line {text!r}: expected 'transcript<TAB>spoken form' with both columns non-empty")
    return transcript, spoken


def _split_size(total: int, fraction: float) -> int:
    return 0 if fraction == 0 else max(1, round(total * fraction))


def text_problems(labelled: Sequence[tuple[str, str]], max_chars: int = MAX_CHARS) -> list[str]:
    """What makes texts unfit to synthesize, one phrase per kind naming every label (line number or id).

    Args:
        labelled: (label, text) pairs.
        max_chars: longest accepted text in characters.
    """
    if max_chars < 1:
        raise SpeechkitError(f"max_chars must be >= 1, got {max_chars}")
    silent = [label for label, text in labelled if not speakable(text)]
    long = [(label, len(text)) for label, text in labelled if len(text) > max_chars]
    problems = []
    if silent:
        problems.append(f"{_named(silent)} {'has' if len(silent) == 1 else 'have'} no letter or digit")
    if long:
        longest = max(length for _, length in long)
        problems.append(
            f"{_named([label for label, _ in long])} {'is' if len(long) == 1 else 'are'} longer than max_chars="
            f"{max_chars} (up to {longest} characters; --max-chars raises the limit)"
        )
    return problems


def _named(labels: Sequence[str]) -> str:
    shown = ", ".join(labels[:MAX_NAMED])
    return shown if len(labels) <= MAX_NAMED else f"{shown} ... ({len(labels)} in all)"


def synthesize_splits(
    utterances: Sequence[Utterance],
    target: Target,
    *,
    voice: str = "en",
    speakers: int = 4,
    seed: int = 0,
    sample_rate: int = 16000,
    max_chars: int = MAX_CHARS,
    test_speakers: int = 0,
    language: str | None = None,
) -> dict[str, CutSet]:
    """Synthesize every utterance (cached FLAC under ``<out_dir>/audio``) and write the manifests of each split.

    Args:
        utterances: what to speak, with ids and splits.
        target: the output (``base.open_target``); audio goes to ``<target.out_dir>/audio``.
        voice: eSpeak voice name.
        speakers: number of distinct speaker styles.
        seed: draws the styles and which style speaks each utterance.
        sample_rate: rate of the written FLAC files (16000 or 22050).
        max_chars: longest accepted text; a longer one (or one without a letter or digit) is an error naming its id.
        test_speakers: how many of the ``speakers`` styles speak only the test split (0: all speak every split).
        language: ``supervision.language`` (default: the voice's language).
    """
    if sample_rate not in SAMPLE_RATES:
        raise SpeechkitError(f"sample_rate must be one of {SAMPLE_RATES}, got {sample_rate}")
    problems = text_problems([(u.id, u.speech) for u in utterances], max_chars)
    if problems:
        raise SpeechkitError(f"{target.corpus}: utterance(s) {'; '.join(problems)}")
    synth = Synthesizer()
    styles = draw_styles(voice, speakers, seed)
    synth.check_style(styles[0])
    speaker_of = speaker_assignment([u.split for u in utterances], speakers, test_speakers, seed)
    audio_dir = target.out_dir / "audio"
    splits: dict[str, tuple[list, list]] = {}
    with progress_bar(utterances, desc=f"{target.corpus}: synthesize", unit="utt") as bar:
        for utterance, speaker in zip(bar, speaker_of):
            style = styles[speaker]
            recording, supervision = _synthesize_one(synth, utterance, style, audio_dir, sample_rate, language)
            recs, sups = splits.setdefault(utterance.split, ([], []))
            recs.append(recording)
            sups.append(supervision)
    order = [s for s in SPLITS if s in splits] + sorted(set(splits) - set(SPLITS))
    return write_corpus(
        target,
        {s: (RecordingSet.from_recordings(splits[s][0]), SupervisionSet.from_segments(splits[s][1])) for s in order},
    )


def _synthesize_one(
    synth: Synthesizer, utterance: Utterance, style: SpeakerStyle, audio_dir: Path, sample_rate: int,
    language: str | None = None,
) -> tuple[Recording, SupervisionSegment]:
    path = synthesize_to_file(synth, utterance.speech, style, audio_dir, sample_rate)
    recording = Recording.from_file(path, recording_id=utterance.id)
    supervision = whole_recording_supervision(
        recording, utterance.text, language or language_of_voice(style.voice), style.name,
        custom=dict(utterance.custom) or None,
    )
    return recording, supervision


def read_lines(path: Path, limit: int | None, max_chars: int = MAX_CHARS) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines of a UTF-8 file (BOM dropped), the first ``limit`` of them.

    A used line without a letter or digit, or longer than ``max_chars``, is an error naming every such line.
    """
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as error:
        raise SpeechkitError(f"synthetic: {path} is not UTF-8 text: {error}") from error
    kept = [(number, line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]
    if len(kept) < len(lines):
        log.info("synthetic: %s: skipped %d blank lines", path, len(lines) - len(kept))
    if not kept:
        raise SpeechkitError(f"synthetic: {path} has no non-blank lines")
    if limit is not None and limit > len(kept):
        raise SpeechkitError(f"num_utterances={limit} but {path} has only {len(kept)} non-blank lines")
    problems = text_problems([(str(number), text) for number, text in kept[:limit]], max_chars)
    if problems:
        raise SpeechkitError(f"synthetic: {path}: line(s) {'; line(s) '.join(problems)}")
    return kept[:limit]


def source_texts(
    source: str, voice: str, num_utterances: int | None, seed: int, max_chars: int = MAX_CHARS
) -> list[tuple[str, str]]:
    """(utterance id, text) pairs from a text file or the word ``numbers``."""
    if source == "numbers":
        english = language_of_voice(voice) == "en"
        numbers = draw_numbers(1000 if num_utterances is None else num_utterances, seed)
        return [(f"numbers-{i:06d}", number_words(n) if english else str(n)) for i, n in enumerate(numbers)]
    path = Path(source)
    if not path.is_file():
        raise SpeechkitError(f"synthetic: source {source} is neither a text file nor the word 'numbers'")
    return [(f"{path.stem}-{number:06d}", text) for number, text in read_lines(path, num_utterances, max_chars)]


def prepare(
    source: str | Path,
    out_dir: str | Path,
    voice: str = "en",
    num_utterances: int | None = None,
    seed: int = 0,
    speakers: int = 4,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    sample_rate: SampleRate = 16000,
    max_chars: int = MAX_CHARS,
    test_speakers: int = 0,
    language: str | None = None,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Synthesize a corpus and write its manifests; returns ``{split: CutSet}``.

    Args:
        source: a UTF-8 text file (one utterance a line; ``transcript<TAB>spoken form`` to respell) or ``numbers``.
        out_dir: manifest folder (audio under ``<out_dir>/audio``).
        voice: eSpeak voice name (``Synthesizer().list_voices()``).
        num_utterances: how many lines / numbers (default: every line; 1,000 numbers).
        seed: draws numbers, splits, speaker styles and their assignment.
        speakers: number of distinct speaker styles.
        dev_fraction: share of distinct texts in dev.
        test_fraction: share of distinct texts in test.
        sample_rate: 16000 (default) or 22050 (eSpeak's native rate).
        max_chars: longest accepted line in characters (see the module docstring).
        test_speakers: how many of the ``speakers`` styles speak only the test split (speaker-disjoint test).
        language: ``supervision.language`` when the voice reads another language (default: the voice's).
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out synthesized clips that fail the audio checks (listed in ``rejected.jsonl``).
        min_duration: shortest accepted clip, in seconds.

    Examples:
        speechkit prepare synthetic recipes/new_language/ky_numbers.txt out/ky --voice ky --num_utterances 200
        speechkit prepare synthetic numbers out/en_numbers --num_utterances 100 --speakers 2
        speechkit prepare synthetic ps_numbers_fa.tsv out/ps_fa --voice fa --language ps --speakers 6 --test_speakers 2
    """
    if num_utterances is not None and num_utterances < 1:
        raise SpeechkitError(f"num_utterances must be >= 1, got {num_utterances}")
    options = dict(voice=voice, num_utterances=num_utterances, seed=seed, speakers=speakers,
                   dev_fraction=dev_fraction, test_fraction=test_fraction, sample_rate=sample_rate, max_chars=max_chars)
    options.update({k: v for k, v in (("test_speakers", test_speakers), ("language", language)) if v})
    target = open_target(
        out_dir, "synthetic", source, options, overwrite=overwrite, skip_bad=skip_bad, min_duration=min_duration
    )
    Synthesizer().check_style(SpeakerStyle(voice))  # fail on a bad voice before reading or drawing anything
    speaker_assignment([], speakers, test_speakers, seed)  # check the speaker counts before synthesizing
    lines = source_texts(str(source), voice, num_utterances, seed, max_chars)
    pairs = [(uid, *split_spoken(text)) for uid, text in lines]
    splits = assign_splits([text for _, text, _ in pairs], dev_fraction, test_fraction, seed)
    utterances = [Utterance(uid, text, split, spoken=spoken) for (uid, text, spoken), split in zip(pairs, splits)]
    return synthesize_splits(
        utterances, target, voice=voice, speakers=speakers, seed=seed, sample_rate=sample_rate, max_chars=max_chars,
        test_speakers=test_speakers, language=language,
    )
