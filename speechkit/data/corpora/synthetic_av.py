"""An offline audio-visual corpus: eSpeak NG speech with a rendered talking mouth aligned to it.

``speechkit prepare synthetic_av digits <out_dir> [--num_utterances 300] [--speakers 8] [--test_speakers 2]
[--frame_size 32] [--seed 0]``

Lip reading needs video that moves with the speech. eSpeak NG reports when each phoneme starts
(``Synthesizer.synthesize_with_phonemes``); each phoneme's viseme (``speechkit.data.mouth``) drives a rendered
mouth at 25 fps, so the video follows the audio to the millisecond and a lip reader can learn it on CPU.

- Source ``digits`` (default): distinct strings of ``--min_digits``-``--max_digits`` English digit words
  ("three one four"; ten words, all visually distinct enough to learn). ``numbers`` and a UTF-8 text file work as
  in the ``synthetic`` corpus (``speechkit.data.corpora.synthetic.source_texts``).
- Speakers: ``--speakers`` eSpeak styles of ``--voice`` (``draw_styles``: variant, rate, pitch), each with its own
  mouth look (``draw_mouth_styles``: grey levels, size, position). The last ``--test_speakers`` of them speak only
  the test split, the others train and dev: **test is speaker-disjoint** (and text-disjoint: splits are drawn over
  distinct texts, ``assign_splits``).
- Audio: 16 kHz 16-bit FLAC ``<out_dir>/audio/<hash>.flac`` (the same cache and bytes as ``synthetic``) beside its
  phoneme timings ``<hash>.phonemes.json``.
- Video: each cut's custom field **``mouth``** (``MOUTH_FIELD``), a Lhotse ``TemporalArray`` of uint8 frames
  ``(V, frame_size, frame_size)`` (default **32 x 32**, grayscale), ``frame_shift`` 0.04 s (25 fps), ``V =
  round(duration / 0.04)``, stored as ``<out_dir>/mouth/<hash>.npy`` (absolute paths in the manifests). Load it
  with ``cut.load_mouth()``, or in training with ``DataConfig.video_field: mouth`` (``SpeechBatch.video``). Frame
  ``i`` shows the mouth at ``(i + 0.5) * 0.04`` s.

``<out_dir>/mouth_preview.png`` draws every viseme as each speaker shows it and the frames of one utterance.
Files are written atomically and cached: a second run with the same options reuses every audio and video file,
and gives bit-identical manifests. The default 300 utterances (5.4 minutes of speech, 8,072 frames; 225 train,
30 dev, 45 test) take about 20 s on 2 CPU cores.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
from lhotse import CutSet, Recording, RecordingSet, SupervisionSet
from lhotse.array import TemporalArray

from speechkit.checkpoints import save_atomic
from speechkit.data.corpora.base import Target, open_target, whole_recording_supervision, write_corpus
from speechkit.data.corpora.checks import MIN_DURATION
from speechkit.data.corpora.synthetic import (
    MAX_CHARS,
    SPLITS,
    Utterance,
    assign_splits,
    language_of_voice,
    source_texts,
    speaker_assignment,
    text_problems,
)
from speechkit.data.mouth import (
    FRAME_SIZE,
    MouthStyle,
    draw_mouth_styles,
    frame_visemes,
    num_video_frames,
    render_mouth,
    save_preview,
)
from speechkit.data.synth import ESPEAK_SAMPLE_RATE, SpeakerStyle, Synthesizer, draw_styles, resample, style_key
from speechkit.data.video import mouth_array, write_bytes, write_mouth
from speechkit.errors import SpeechkitError
from speechkit.progress import progress_bar

log = logging.getLogger(__name__)

MOUTH_FIELD = "mouth"
DEFAULT_UTTERANCES = 300
PREVIEW_FILE = "mouth_preview.png"
SAMPLE_RATE = 16000
DIGITS = "zero one two three four five six seven eight nine".split()
RENDER_VERSION = 1  # part of each video file's hash: bump when the renderer's pixels change


def draw_digit_strings(count: int, seed: int, min_digits: int = 2, max_digits: int = 5) -> list[str]:
    """``count`` distinct strings of digit words ("three one four"), lengths drawn in [min_digits, max_digits]."""
    if not 1 <= min_digits <= max_digits:
        raise SpeechkitError(f"need 1 <= min_digits <= max_digits, got {min_digits} and {max_digits}")
    possible = sum(10**n for n in range(min_digits, max_digits + 1))
    if count > possible:
        raise SpeechkitError(f"num_utterances={count}: only {possible} distinct strings of {min_digits}-{max_digits} "
                             "digits exist; raise --max_digits")
    rng, texts, seen = random.Random(f"{seed}-digits"), [], set()
    while len(texts) < count:
        text = " ".join(rng.choice(DIGITS) for _ in range(rng.randint(min_digits, max_digits)))
        if text not in seen:
            seen.add(text)
            texts.append(text)
    return texts


def write_flac(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """16-bit FLAC of float samples in [-1, 1], written atomically (``save_atomic``)."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="FLAC")
    save_atomic(buffer.getvalue(), path, write_bytes)


def speak(synth: Synthesizer, text: str, style: SpeakerStyle, audio_dir: Path, version: str) -> tuple[Path, list]:
    """``<audio_dir>/<hash>.flac`` (16 kHz) and its phoneme timings, synthesized unless both are cached."""
    key = style_key(text, style, SAMPLE_RATE, version)
    audio, timings = audio_dir / f"{key}.flac", audio_dir / f"{key}.phonemes.json"
    if audio.is_file() and timings.is_file():
        return audio, [tuple(p) for p in json.loads(timings.read_text(encoding="utf-8"))]
    samples, phonemes = synth.synthesize_with_phonemes(text, style)
    write_flac(audio, resample(samples, ESPEAK_SAMPLE_RATE, SAMPLE_RATE), SAMPLE_RATE)
    save_atomic(json.dumps(phonemes).encode("utf-8"), timings, write_bytes)
    return audio, phonemes


def mouth_video(
    phonemes: list, duration: float, mouth: MouthStyle, audio_key: str, mouth_dir: Path, frame_size: int
) -> TemporalArray:
    """Render (unless cached) the mouth saying ``phonemes`` into ``<mouth_dir>/<hash>.npy``; its ``TemporalArray``."""
    payload = json.dumps({"audio": audio_key, "mouth": asdict(mouth), "size": frame_size, "render": RENDER_VERSION},
                         sort_keys=True)
    key = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:20]
    path = mouth_dir / f"{key}.npy"
    if path.is_file():
        return mouth_array(path, num_video_frames(duration), frame_size)
    return write_mouth(path, render_mouth(phonemes, duration, mouth, seed=int(key[:8], 16), size=frame_size))


def build_corpus(
    utterances: list[Utterance], speaker_of: list[int], speakers: int, target: Target, voice: str, seed: int,
    frame_size: int,
) -> dict[str, CutSet]:
    """Synthesize and render every utterance, then write the manifests (cuts carry the ``mouth`` field)."""
    synth = Synthesizer()
    styles = draw_styles(voice, speakers, seed)
    mouths = draw_mouth_styles(len(styles), seed)
    synth.check_style(styles[0])
    version = synth.version()
    audio_dir, mouth_dir = target.out_dir / "audio", target.out_dir / MOUTH_FIELD
    splits: dict[str, tuple[list, list]] = {}
    custom: dict[str, dict] = {}
    pairs = list(zip(utterances, speaker_of))
    with progress_bar(pairs, desc=f"{target.corpus}: synthesize and render", unit="utt") as bar:
        for utterance, speaker in bar:
            style = styles[speaker]
            path, phonemes = speak(synth, utterance.text, style, audio_dir, version)
            recording = Recording.from_file(path, recording_id=utterance.id)
            key = style_key(utterance.text, style, SAMPLE_RATE, version)
            video = mouth_video(phonemes, recording.duration, mouths[speaker], key, mouth_dir, frame_size)
            custom[recording.id] = {MOUTH_FIELD: video}
            supervision = whole_recording_supervision(
                recording, utterance.text, language_of_voice(voice), style.name, custom=dict(utterance.custom) or None)
            recs, sups = splits.setdefault(utterance.split, ([], []))
            recs.append(recording)
            sups.append(supervision)
    order = [s for s in SPLITS if s in splits]
    cuts = write_corpus(
        target,
        {s: (RecordingSet.from_recordings(splits[s][0]), SupervisionSet.from_segments(splits[s][1])) for s in order},
        cut_custom=custom,
    )
    example = cuts[order[0]][0]
    timings = json.loads(Path(example.recording.sources[0].source).with_suffix(".phonemes.json").read_text())
    frames = example.load_custom(MOUTH_FIELD)
    save_preview(target.out_dir / PREVIEW_FILE, mouths, frames, frame_visemes([tuple(t) for t in timings], len(frames)),
                 frame_size)
    log.info("synthetic_av: the speakers' visemes and one utterance's frames are drawn in %s",
             target.out_dir / PREVIEW_FILE)
    return cuts


def prepare(
    source: str | Path,
    out_dir: str | Path,
    voice: str = "en",
    num_utterances: int | None = None,
    seed: int = 0,
    speakers: int = 8,
    test_speakers: int = 2,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.15,
    frame_size: int = FRAME_SIZE,
    min_digits: int = 2,
    max_digits: int = 5,
    max_chars: int = MAX_CHARS,
    *,
    overwrite: bool = False,
    skip_bad: bool = False,
    min_duration: float = MIN_DURATION,
) -> dict[str, CutSet]:
    """Synthesize an audio-visual corpus (16 kHz audio + 25 fps mouth video) and write its manifests.

    Args:
        source: ``digits`` (strings of digit words), ``numbers``, or a UTF-8 text file (one utterance a line).
        out_dir: manifest folder (audio under ``<out_dir>/audio``, video under ``<out_dir>/mouth``).
        voice: eSpeak voice name (``en`` and its regional voices suit the viseme table).
        num_utterances: how many utterances (default 300; of a text file: its first lines, default all).
        seed: draws texts, splits, speakers (voice and mouth) and which speaker says what.
        speakers: number of distinct speakers.
        test_speakers: how many of them speak only the test split (speaker-disjoint test).
        dev_fraction: share of distinct texts in dev.
        test_fraction: share of distinct texts in test.
        frame_size: side of the square grayscale mouth frames, in pixels (>= 16).
        min_digits: fewest digit words per ``digits`` utterance.
        max_digits: most digit words per ``digits`` utterance.
        max_chars: longest accepted text in characters.
        overwrite: replace a different corpus already in ``out_dir``.
        skip_bad: leave out clips that fail the audio checks (listed in ``rejected.jsonl``).
        min_duration: shortest accepted clip, in seconds.

    Examples:
        speechkit prepare synthetic_av digits data/synthetic_av
        speechkit prepare synthetic_av digits data/av_big --num_utterances 3000 --speakers 16 --test_speakers 4
    """
    if num_utterances is not None and num_utterances < 1:
        raise SpeechkitError(f"num_utterances must be >= 1, got {num_utterances}")
    if frame_size < 16:
        raise SpeechkitError(f"frame_size must be >= 16 pixels, got {frame_size}")
    if test_speakers < 1:
        raise SpeechkitError(f"need 1 <= test_speakers < speakers (a speaker-disjoint test), got {test_speakers}")
    options = dict(voice=voice, num_utterances=num_utterances, seed=seed, speakers=speakers,
                   test_speakers=test_speakers, dev_fraction=dev_fraction, test_fraction=test_fraction,
                   frame_size=frame_size, min_digits=min_digits, max_digits=max_digits, max_chars=max_chars,
                   render=RENDER_VERSION)
    target = open_target(
        out_dir, "synthetic_av", source, options, overwrite=overwrite, skip_bad=skip_bad, min_duration=min_duration
    )
    Synthesizer().check_style(SpeakerStyle(voice))  # fail on a bad voice before any work
    if str(source) == "digits":
        texts = draw_digit_strings(num_utterances or DEFAULT_UTTERANCES, seed, min_digits, max_digits)
        pairs = [(f"digits-{i:06d}", text) for i, text in enumerate(texts)]
    else:
        count = num_utterances or (DEFAULT_UTTERANCES if str(source) == "numbers" else None)
        pairs = source_texts(str(source), voice, count, seed, max_chars)
    problems = text_problems(pairs, max_chars)
    if problems:
        raise SpeechkitError(f"synthetic_av: utterance(s) {'; '.join(problems)}")
    splits = assign_splits([text for _, text in pairs], dev_fraction, test_fraction, seed)
    utterances = [Utterance(uid, text, split) for (uid, text), split in zip(pairs, splits)]
    speaker_of = speaker_assignment(splits, speakers, test_speakers, seed)
    log.info("synthetic_av: %d utterances, %d speakers (%d test-only)", len(utterances), speakers, test_speakers)
    return build_corpus(utterances, speaker_of, speakers, target, voice, seed, frame_size)
