"""eSpeak phoneme timings and the rendered mouth: the video follows the phonemes."""

from __future__ import annotations

import numpy as np
import pytest

from speechkit.data.mouth import (
    VISEME_INDEX,
    VISEMES,
    MouthStyle,
    decode_visemes,
    draw_mouth_styles,
    frame_visemes,
    num_video_frames,
    render_frame,
    render_mouth,
    shape_track,
    viseme_of,
)
from speechkit.data.synth import ESPEAK_SAMPLE_RATE, SpeakerStyle, Synthesizer, draw_styles
from speechkit.errors import SpeechkitError


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer()


def test_phoneme_events_are_monotone_cover_the_audio_and_leave_the_samples_unchanged(synth: Synthesizer) -> None:
    style = SpeakerStyle("en", "m3", rate=160)
    samples, phonemes = synth.synthesize_with_phonemes("three one four nine", style)
    assert np.array_equal(samples, synth.synthesize("three one four nine", "en", rate=160, variant="m3"))
    duration = samples.size / ESPEAK_SAMPLE_RATE
    starts = [start for start, _ in phonemes]
    assert starts == sorted(starts) and 0 <= starts[0] < 0.05  # speech starts at once
    assert duration - 0.05 < starts[-1] <= duration  # the final pause marker sits at the end of the audio
    names = [name.lstrip("',") for _, name in phonemes]
    assert names[:4] == ["T", "r", "i:", "w"]  # "three one": th r ee w...
    assert {"f", "n", "aI"} <= set(names)


def test_phoneme_timings_follow_the_speaking_rate(synth: Synthesizer) -> None:
    slow = synth.synthesize_with_phonemes("seven five", SpeakerStyle("en", rate=100))[1]
    fast = synth.synthesize_with_phonemes("seven five", SpeakerStyle("en", rate=250))[1]
    assert [p for _, p in slow] == [p for _, p in fast]
    assert slow[-1][0] > 1.8 * fast[-1][0]


def test_viseme_table_groups_phonemes_by_their_look() -> None:
    groups = {"bilabial": ["p", "b", "m"], "labiodental": ["f", "v"], "rounded": ["w", "'u:", "oU"],
              "open": ["'aI", "a"], "spread": ["'i:", "I"], "alveolar": ["s", "T", "n"], "rest": ["_:", "_"]}
    for viseme, phonemes in groups.items():
        assert {viseme_of(p) for p in phonemes} == {VISEME_INDEX[viseme]}, viseme
    assert 6 <= len(VISEMES) <= 9


def test_frames_are_sampled_at_their_centres() -> None:
    # m from 0 to 0.09 s, aa to 0.29 s: frame centres 0.02, 0.06, 0.10 ... 0.26 s are m m aa aa aa aa aa.
    phonemes = [(0.0, "m"), (0.09, "aa"), (0.29, "_")]
    assert frame_visemes(phonemes, 9).tolist() == [1, 1, 5, 5, 5, 5, 5, 0, 0]
    track = shape_track(phonemes, 9)
    assert track[0, 0] == pytest.approx(0.0) and track[4, 0] == pytest.approx(1.0)
    assert 0.0 < track[2, 0] < 1.0  # smoothed across the boundary
    with pytest.raises(SpeechkitError, match="non-decreasing"):
        shape_track([(0.2, "m"), (0.1, "a")], 9)


def test_mouth_shapes_differ_as_their_visemes_say() -> None:
    style = MouthStyle()
    darkness = {v.name: (render_frame(v.opening, v.width, v.teeth, style) < 0.25).sum() for v in VISEMES}
    assert darkness["bilabial"] < darkness["rest"] < darkness["rounded"] < darkness["open"]
    spread, rounded = (render_frame(v.opening, v.width, v.teeth, style) < 0.25 for v in
                       (VISEMES[VISEME_INDEX["spread"]], VISEMES[VISEME_INDEX["rounded"]]))
    assert spread.any(axis=0).sum() > rounded.any(axis=0).sum() + 3  # wider opening


def test_rendered_video_follows_the_phoneme_timings(synth: Synthesizer) -> None:
    styles, mouths = draw_styles("en", 4, seed=0), draw_mouth_styles(4, seed=0)
    accuracies = []
    for style, mouth, text in zip(styles, mouths, ["three one four nine", "five six eight two", "zero seven one",
                                                   "nine nine four"]):
        samples, phonemes = synth.synthesize_with_phonemes(text, style)
        duration = samples.size / ESPEAK_SAMPLE_RATE
        video = render_mouth(phonemes, duration, mouth, seed=1)
        assert video.dtype == np.uint8 and video.shape == (num_video_frames(duration), 32, 32)
        wanted = frame_visemes(phonemes, len(video))
        accuracies.append((decode_visemes(video, mouth) == wanted).mean())
        assert len(set(wanted.tolist())) >= 4
    # Each frame shows the viseme of the phoneme at its centre, except near fast transitions and in noise.
    assert min(accuracies) > 0.75 and np.mean(accuracies) > 0.85, accuracies
    shuffled = np.random.default_rng(0).permutation(wanted)
    assert (decode_visemes(video, mouth) == shuffled).mean() < 0.6  # a misaligned track does not match


def test_render_is_deterministic_and_speakers_look_different() -> None:
    phonemes = [(0.0, "w"), (0.1, "V"), (0.2, "n")]
    mouths = draw_mouth_styles(3, seed=0)
    first = render_mouth(phonemes, 0.4, mouths[0], seed=3)
    assert np.array_equal(first, render_mouth(phonemes, 0.4, mouths[0], seed=3))
    assert not np.array_equal(first, render_mouth(phonemes, 0.4, mouths[0], seed=4))  # noise and motion
    assert np.abs(first.astype(int) - render_mouth(phonemes, 0.4, mouths[1], seed=3)).mean() > 5
    assert draw_mouth_styles(3, seed=0) == mouths and draw_mouth_styles(3, seed=1) != mouths
    with pytest.raises(SpeechkitError, match="size must be >= 16"):
        render_mouth(phonemes, 0.4, mouths[0], seed=0, size=8)
