"""eSpeak NG synthesis: determinism, voices, speaker styles and the FLAC cache."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from speechkit.data.synth import (
    ESPEAK_SAMPLE_RATE,
    SpeakerStyle,
    Synthesizer,
    draw_styles,
    speakable,
    synthesize_to_file,
)
from speechkit.errors import SpeechkitError


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer()


def test_same_text_and_style_give_identical_samples_in_any_order(synth: Synthesizer) -> None:
    first = synth.synthesize("three hundred twelve", "en", rate=160, pitch=40, variant="m3")
    synth.synthesize("something else first", "de", rate=120, pitch=70, variant="f2")  # changes eSpeak's state
    again = synth.synthesize("three hundred twelve", "en", rate=160, pitch=40, variant="m3")
    assert first.dtype == np.float32 and first.ndim == 1
    assert np.array_equal(first, again)
    assert 0.5 < first.size / ESPEAK_SAMPLE_RATE < 3.0 and 0.05 < np.abs(first).max() <= 1.0


def test_breath_noise_does_not_depend_on_the_clock(synth: Synthesizer) -> None:
    # eSpeak seeds the breath noise of the f* variants from the clock at initialization.
    first = synth.synthesize("forty three thousand four hundred eighty one", "en", variant="f2")
    time.sleep(1.1)
    assert np.array_equal(first, synth.synthesize("forty three thousand four hundred eighty one", "en", variant="f2"))


def test_style_changes_the_audio(synth: Synthesizer) -> None:
    slow = synth.synthesize("one two three four five", "en", rate=100)
    fast = synth.synthesize("one two three four five", "en", rate=250)
    assert slow.size > 1.5 * fast.size  # 2.5x the words per minute
    m3 = synth.synthesize("one two three four five", "en", variant="m3")
    f2 = synth.synthesize("one two three four five", "en", variant="f2")
    assert not np.array_equal(m3[: min(m3.size, f2.size)], f2[: min(m3.size, f2.size)])


def test_unknown_voice_names_it_and_valid_ones(synth: Synthesizer) -> None:
    with pytest.raises(SpeechkitError, match=r"unknown eSpeak voice 'pashto'.*\ben\b"):
        synth.synthesize("hello", "pashto")
    with pytest.raises(SpeechkitError, match="variant 'zz9'"):
        synth.synthesize("hello", "en", variant="zz9")
    assert {"en", "de", "ur", "fa", "sd"} <= set(synth.list_voices()) and "ps" not in synth.list_voices()


def test_empty_text_is_an_error(synth: Synthesizer) -> None:
    with pytest.raises(SpeechkitError, match="empty"):
        synth.synthesize("   ", "en")


def test_style_out_of_range() -> None:
    with pytest.raises(SpeechkitError, match="rate=10"):
        SpeakerStyle("en", rate=10)


def test_draw_styles_is_seeded_and_distinct() -> None:
    styles = draw_styles("en", 6, seed=3)
    assert styles == draw_styles("en", 6, seed=3) and styles != draw_styles("en", 6, seed=4)
    assert len(set(styles)) == 6 and len({s.name for s in styles}) == 6
    assert all(s.voice == "en" and 140 <= s.rate <= 200 and 30 <= s.pitch <= 70 for s in styles)


def test_synthesize_to_file_caches_by_content(synth: Synthesizer, tmp_path: Path) -> None:
    style = SpeakerStyle("en", "f2", 170, 55, 45)
    path = synthesize_to_file(synth, "seven", style, tmp_path, 16000)
    samples, rate = soundfile.read(path, dtype="int16")
    assert rate == 16000 and path.suffix == ".flac" and samples.size > 1000
    stamp = path.stat().st_mtime_ns
    assert synthesize_to_file(synth, "seven", style, tmp_path, 16000) == path and path.stat().st_mtime_ns == stamp
    other = synthesize_to_file(synth, "seven", SpeakerStyle("en", "f2", 171, 55, 45), tmp_path, 16000)
    assert other != path and len(list(tmp_path.iterdir())) == 2


def test_punctuation_alone_is_refused(synth: Synthesizer) -> None:
    # "..." gave a 0.01 s click that crashed training with an STFT error naming no cut.
    with pytest.raises(SpeechkitError, match=r"'\.\.\.': it has no letter or digit"):
        synth.synthesize("...", "en")
    assert speakable("7") and speakable("سلام") and not speakable("?! -- …")
