"""Sound scenes built offline for audio captioning and audio-text retrieval, five templated captions each.

``speechkit prepare scenes_synth <fsdd_dir> <out_dir> [--num_train 1500] [--num_dev 100] [--num_test 200]
[--seed 0] [--scene_seconds 4.0]``

A scene is ``scene_seconds`` of audio at 16 kHz: one or two events, each in its own third of the scene (start,
middle, end), over an optional background noise. Events: an FSDD digit spoken by a (male) FSDD speaker, a sentence
synthesized with eSpeak NG by a man's or a woman's voice (``speechkit.data.synth``; cached FLAC under
``<out_dir>/audio/speech``), a high (1800 Hz) or low (300 Hz) beep, a rising or falling sweep (300-2000 Hz).
Every event is scaled to an RMS of ``EVENT_DBFS`` over its active samples; the background (white, pink or brown
noise) to ``NOISE_DBFS["quiet"]`` or ``["loud"]``. What was placed where and at which level is stored in
``supervision.custom["scene"]`` (onsets and durations in seconds, levels in dBFS) so that captions can be checked
against the audio.

Captions: five paraphrases per scene from templates with synonyms ("a high beep" / "a shrill beep", "at the start"
/ "at the beginning", "over quiet hiss" / "with faint white noise behind"), events in time order; stored as
``speechkit.data.captions`` says (``text`` = the first, ``custom["captions"]`` = all five).
Splits use disjoint FSDD takes (``fsdd.split_of_take``: test 0-4, dev 5-9, train 10-49), so no digit recording is
heard in two splits. ``<out_dir>/vocabulary.txt`` lists the training captions' words (``AudioCaptioner``'s
``vocabulary``). Deterministic for a seed.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, Recording, RecordingSet, SupervisionSet

from speechkit.data.captions import caption_supervision_custom, captions_of
from speechkit.data.corpora.base import (
    open_target,
    require_dir,
    whole_recording_supervision,
    write_corpus,
)
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.data.corpora.fsdd import (
    DIGIT_WORDS,
    FILE_PATTERN,
    recordings_dir,
    split_of_take,
)
from speechkit.data.synth import SpeakerStyle, Synthesizer, resample, synthesize_to_file
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar
from speechkit.text.words import build_vocabulary

SAMPLE_RATE = 16000
EVENT_DBFS = -26.0
NOISE_DBFS = {"quiet": -50.0, "loud": -32.0}
POSITIONS = ("start", "middle", "end")
SENTENCES = ("the weather is nice today", "please close the door", "i will call you later",
             "where is the train station", "this is a short message", "we are going home now")
VOICES = {"man": ("m1", "m3", "m5", "m7"), "woman": ("f1", "f2", "f3", "f4")}

EVENT_WORDS = {  # (kind, value) -> five phrasings; {word} is the digit's word
    ("digit", None): ("someone says {word}", "a voice says {word}", "the word {word} is spoken",
                      "a man says the number {word}", "{word} is said"),
    ("speech", "man"): ("a man speaks", "a man talks", "a male voice speaks", "a man is talking",
                        "a man says a sentence"),
    ("speech", "woman"): ("a woman speaks", "a woman talks", "a female voice speaks", "a woman is talking",
                          "a woman says a sentence"),
    ("beep", "high"): ("a high beep", "a high pitched beep", "a short high tone", "a shrill beep", "a high tone"),
    ("beep", "low"): ("a low beep", "a low pitched beep", "a short low tone", "a deep beep", "a low tone"),
    ("sweep", "rising"): ("a rising tone", "a tone sweeps up", "an upward sweep", "a tone rising in pitch",
                          "a rising whistle"),
    ("sweep", "falling"): ("a falling tone", "a tone sweeps down", "a downward sweep", "a tone falling in pitch",
                           "a falling whistle"),
}
POSITION_WORDS = {"start": ("at the start", "at the beginning", "first", "early on", "in the beginning"),
                  "middle": ("in the middle", "midway", "halfway through", "in the middle", "midway through"),
                  "end": ("at the end", "at the end", "near the end", "last", "at the very end")}
NOISE_WORDS = {"white": ("white noise", "hiss", "hissing", "static", "white noise"),
               "pink": ("pink noise", "rushing noise", "pink noise", "rushing", "pink noise"),
               "brown": ("brown noise", "rumble", "rumbling", "brown noise", "low rumble")}
LEVEL_WORDS = {"quiet": ("quiet", "faint", "soft", "low", "quiet"), "loud": ("loud", "strong", "heavy", "loud",
                                                                            "intense")}
BACKGROUND_TEMPLATES = ("over {level} {noise}", "with {level} {noise} behind", "against {level} {noise}",
                        "with {level} {noise} in the background", "in {level} {noise}")
SILENCE_WORDS = ("in silence", "with no background noise", "with silence around", "in silence",
                 "without background noise")


@dataclass(frozen=True)
class Event:
    """One sound of a scene: ``kind`` digit / speech / beep / sweep, its ``value`` (digit, man/woman, high/low,
    rising/falling), its third of the scene, and where it was placed (seconds)."""

    kind: str
    value: object
    position: str
    source: str = ""
    onset: float = 0.0
    duration: float = 0.0
    level_dbfs: float = EVENT_DBFS


@dataclass(frozen=True)
class Background:
    """The scene's noise (``colour`` None = silence) and its level."""

    colour: str | None
    level: str | None = None
    level_dbfs: float | None = None


def event_phrase(event: Event, paraphrase: int) -> str:
    """The paraphrase-th phrasing of an event with its position."""
    key = (event.kind, None if event.kind == "digit" else event.value)
    what = EVENT_WORDS[key][paraphrase].format(word=DIGIT_WORDS[event.value] if event.kind == "digit" else "")
    return f"{what} {POSITION_WORDS[event.position][paraphrase]}"


def background_phrase(background: Background, paraphrase: int) -> str:
    if background.colour is None:
        return SILENCE_WORDS[paraphrase]
    return BACKGROUND_TEMPLATES[paraphrase].format(level=LEVEL_WORDS[background.level][paraphrase],
                                                   noise=NOISE_WORDS[background.colour][paraphrase])


def scene_captions(events: list[Event], background: Background) -> list[str]:
    """Five captions: events in time order, the background last (paraphrases 0, 2, 4) or first (1, 3)."""
    order = sorted(events, key=lambda e: POSITIONS.index(e.position))
    captions = []
    for p in range(5):
        what = " then ".join(event_phrase(e, p) for e in order)
        bg = background_phrase(background, p)
        captions.append(f"{what} {bg}" if p % 2 == 0 else f"{bg} {what}")
    return [" ".join(c.split()) for c in captions]


def colored_noise(colour: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f power) or brown (1/f^2) Gaussian noise, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    power = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    freqs = np.maximum(np.fft.rfftfreq(samples), 1.0 / samples)
    noise = np.fft.irfft(spectrum / freqs ** (power / 2), n=samples)
    return noise / np.sqrt(np.mean(noise**2))


def tone(kind: str, value: str, rng: np.random.Generator) -> np.ndarray:
    """A beep (0.4-0.6 s) or a sweep (0.7-1.0 s) with 10 ms ramps, unit RMS."""
    seconds = rng.uniform(0.4, 0.6) if kind == "beep" else rng.uniform(0.7, 1.0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    if kind == "beep":
        freq = np.full_like(t, 1800.0 if value == "high" else 300.0)
    else:
        freq = 300 + 1700 * (t / t[-1] if value == "rising" else 1 - t / t[-1])
    wave = np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)
    ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    wave = wave * ramp
    return wave / np.sqrt(np.mean(wave**2))


def active_rms(audio: np.ndarray) -> float:
    """RMS over the samples of the 20 ms frames within 30 dB of the loudest frame (a spoken digit's silence out)."""
    frame = SAMPLE_RATE // 50
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame) if len(audio) >= frame else audio[None]
    energy = np.mean(frames**2, axis=1)
    return float(np.sqrt(np.mean(energy[energy >= energy.max() * 1e-3])))


class SceneMaker:
    """Draws and renders scenes from FSDD digits (per split) and a cache of synthesized sentences."""

    def __init__(self, digits: dict[str, list[Path]], speech_dir: Path, seconds: float) -> None:
        self.digits = digits
        self.speech_dir = speech_dir
        self.seconds = seconds
        self.synth: Synthesizer | None = None
        self._cache: dict[str, np.ndarray] = {}

    def draw(self, rng: random.Random) -> tuple[list[tuple[str, object, str]], Background]:
        """One or two (kind, value, position) events in distinct thirds, and a background."""
        kinds = [("digit", d) for d in range(10)] + [("speech", g) for g in VOICES] + [
            ("beep", "high"), ("beep", "low"), ("sweep", "rising"), ("sweep", "falling")]
        count = rng.choice((1, 2))
        positions = sorted(rng.sample(POSITIONS, count), key=POSITIONS.index)
        events = [(*rng.choice(kinds), position) for position in positions]
        colour = rng.choice((None, "white", "pink", "brown"))
        level = rng.choice(("quiet", "loud")) if colour else None
        return events, Background(colour, level, NOISE_DBFS[level] if level else None)

    def render(self, split: str, scene_id: str, rng: random.Random) -> tuple[np.ndarray, list[Event], Background]:
        """Draw a scene of ``split`` and mix it; an error names a scene that would clip."""
        drawn, background = self.draw(rng)
        np_rng = np.random.default_rng(rng.randrange(2**32))
        total = int(self.seconds * SAMPLE_RATE)
        mix = np.zeros(total)
        events = []
        for kind, value, position in drawn:
            audio, source = self._event_audio(split, kind, value, rng, np_rng)
            audio = audio[: total // 3] * 10 ** (EVENT_DBFS / 20) / active_rms(audio[: total // 3])
            third = POSITIONS.index(position) * (total // 3)
            start = third + rng.randrange(max(1, total // 3 - len(audio)))
            mix[start:start + len(audio)] += audio
            events.append(Event(kind, value, position, source, start / SAMPLE_RATE, len(audio) / SAMPLE_RATE))
        if background.colour is not None:
            mix += colored_noise(background.colour, total, np_rng) * 10 ** (background.level_dbfs / 20)
        if np.abs(mix).max() >= 1.0:
            raise SpeechkitError(f"scenes_synth: scene {scene_id} clips (peak {np.abs(mix).max():.2f})")
        return mix.astype(np.float32), events, background

    def _event_audio(self, split: str, kind: str, value: object, rng: random.Random,
                     np_rng: np.random.Generator) -> tuple[np.ndarray, str]:
        if kind == "digit":
            path = rng.choice(self.digits[f"{split}:{value}"])
            return self._load(path), path.stem
        if kind == "speech":
            style = SpeakerStyle("en", rng.choice(VOICES[value]), rate=rng.randint(150, 190))
            text = rng.choice(SENTENCES)
            self.synth = self.synth or Synthesizer()
            path = synthesize_to_file(self.synth, text, style, self.speech_dir, SAMPLE_RATE)
            return self._load(path), f"{style.name}: {text}"
        return tone(kind, value, np_rng), f"{kind} {value}"

    def _load(self, path: Path) -> np.ndarray:
        if str(path) not in self._cache:
            audio, rate = sf.read(path, dtype="float32")
            self._cache[str(path)] = resample(audio, rate, SAMPLE_RATE).astype(np.float64)
        return self._cache[str(path)]


def fsdd_digits(folder: Path) -> dict[str, list[Path]]:
    """``"split:digit" -> FSDD files`` (splits by take)."""
    out: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        match = FILE_PATTERN.match(path.name)
        if match:
            out.setdefault(f"{split_of_take(int(match[3]))}:{match[1]}", []).append(path)
    missing = [f"{s}:{d}" for s in ("train", "dev", "test") for d in range(10) if f"{s}:{d}" not in out]
    if missing:
        raise SpeechkitError(f"scenes_synth: {folder} lacks FSDD recordings for {missing[:3]} (split:digit); "
                             "expected the whole Free Spoken Digit Dataset")
    return out


def write_flac(path: Path, audio: np.ndarray) -> None:
    """16-bit FLAC written to a temporary name and renamed (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    sf.write(partial, audio, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(partial, path)


def prepare(
    source: str | Path,
    out_dir: str | Path,
    num_train: int = 1500,
    num_dev: int = 100,
    num_test: int = 200,
    seed: int = 0,
    scene_seconds: float = 4.0,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Build the scenes and write train/dev/test manifests and ``vocabulary.txt``; returns ``{split: CutSet}``.

    Args:
        source: the FSDD folder (holding ``recordings/``).
        out_dir: manifest folder (scenes under ``<out_dir>/audio/scenes``, sentences under ``audio/speech``).
        num_train: training scenes.
        num_dev: dev scenes.
        num_test: test scenes.
        seed: draws every scene.
        scene_seconds: length of a scene (at least 3 s: each third holds an event of up to 1 s).
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out scenes that fail the audio checks (listed in ``rejected.jsonl``).
        min_duration: shortest accepted scene, in seconds.

    Examples:
        speechkit prepare scenes_synth ../shared/data/fsdd out/scenes
    """
    options = dict(num_train=num_train, num_dev=num_dev, num_test=num_test, seed=seed, scene_seconds=scene_seconds)
    target = open_target(out_dir, "scenes_synth", source, options, overwrite=overwrite, skip_bad=skip_bad,
                         min_duration=min_duration)
    if min(num_train, num_dev, num_test) < 1 or scene_seconds < 3.0:
        raise SpeechkitError(f"scenes_synth: expected num_train, num_dev, num_test >= 1 and scene_seconds >= 3, got "
                             f"{num_train}, {num_dev}, {num_test}, {scene_seconds}")
    maker = SceneMaker(fsdd_digits(recordings_dir(require_dir(source, "scenes_synth"))),
                       target.out_dir / "audio" / "speech", scene_seconds)
    splits = {}
    for split, count in (("train", num_train), ("dev", num_dev), ("test", num_test)):
        rng = random.Random(f"scenes_synth:{seed}:{split}")
        recordings, supervisions = [], []
        for index in progress_bar(range(count), desc=f"scenes_synth: {split} scenes", unit="scene"):
            scene_id = f"scene-{split}-{index:05d}"
            audio, events, background = maker.render(split, scene_id, rng)
            path = target.out_dir / "audio" / "scenes" / f"{scene_id}.flac"
            write_flac(path, audio)
            recording = Recording.from_file(path, recording_id=scene_id)
            captions = scene_captions(events, background)
            scene = {"events": [asdict(e) for e in events], "background": asdict(background)}
            recordings.append(recording)
            supervisions.append(whole_recording_supervision(recording, captions[0], "en", "scene",
                                                            caption_supervision_custom(captions, scene=scene)))
        splits[split] = (RecordingSet.from_recordings(recordings), SupervisionSet.from_segments(supervisions))
    cuts = write_corpus(target, splits)
    vocabulary = target.out_dir / "vocabulary.txt"
    partial = vocabulary.with_suffix(f".{os.getpid()}.partial")
    partial.write_text("\n".join(build_vocabulary(captions_of(cuts["train"]))) + "\n", encoding="utf-8")
    os.replace(partial, vocabulary)
    return cuts
