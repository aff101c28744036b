"""Noise mixing at Lhotse's SNR, the offline noise set, and determinism."""

import io
import random

import numpy as np
import pytest
import soundfile
from lhotse import Recording

from speechkit.bench.noise import build_noise_set, colored_noise, mix_noise, synthesize_noise
from speechkit.data.noise_mix import load_noise_cuts
from speechkit.errors import SpeechkitError


def _cut(name, samples, rate=16000):
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="FLOAT")
    return Recording.from_bytes(buffer.getvalue(), recording_id=name).to_cut()


@pytest.fixture(scope="module")
def speech():
    rng = np.random.default_rng(0)
    samples = (rng.standard_normal(37_000) * np.hanning(37_000) * 0.2).astype(np.float32)  # 2.3125 s
    return samples, _cut("speech", samples)


@pytest.mark.parametrize("category, seconds", [("pink", 5.0), ("brown", 1.1), ("tones", 5.0)])  # 1.1 s: repeated
@pytest.mark.parametrize("snr", [20.0, 10.0, 0.0])
def test_mixed_audio_hits_the_target_snr(speech, category, seconds, snr):
    clean, cut = speech
    noise = _cut(category, 0.3 * synthesize_noise(category, seconds, 16000, seed=1))
    mixed = mix_noise(cut, [noise], snr, random.Random(3))
    audio = mixed.load_audio()[0]
    assert audio.shape == clean.shape
    added = audio - clean
    measured = 10 * np.log10(np.mean(clean**2) / np.mean(added**2))
    assert abs(measured - snr) < 0.05
    assert np.all(np.abs(added) > 0)  # the noise covers the whole utterance, last 50 ms included


def test_mixing_is_deterministic_in_the_seed(speech):
    _, cut = speech
    noises = [_cut(f"n{i}", synthesize_noise("pink", 4.0, 16000, seed=i)) for i in range(3)]
    first = mix_noise(cut, noises, 10, random.Random("a")).load_audio()
    assert np.array_equal(first, mix_noise(cut, noises, 10, random.Random("a")).load_audio())
    assert not np.array_equal(first, mix_noise(cut, noises, 10, random.Random("b")).load_audio())


def test_colored_noise_slopes():
    """Power falls as 1/f (pink) and 1/f^2 (brown): log-log slope -1 and -2 over 100 Hz-4 kHz."""
    for exponent in (1.0, 2.0):
        samples = colored_noise(1 << 16, exponent, np.random.default_rng(0))
        power = np.abs(np.fft.rfft(samples)) ** 2
        freqs = np.fft.rfftfreq(len(samples), 1 / 16000)
        band = (freqs > 100) & (freqs < 4000)
        slope = np.polyfit(np.log(freqs[band]), np.log(power[band]), 1)[0]
        assert abs(slope + exponent) < 0.1


def test_noise_set_writes_a_manifest(tmp_path):
    cuts = build_noise_set(tmp_path, clips_per_category=1, seconds=1.5)
    assert sorted(c.custom["category"] for c in cuts) == ["babble", "brown", "pink", "tones"]
    loaded = load_noise_cuts(tmp_path / "noise_cuts.jsonl.gz")
    assert [c.id for c in loaded] == [c.id for c in cuts] and all(c.sampling_rate == 16000 for c in loaded)
    babble = loaded[[c.id for c in loaded].index("babble-0")].load_audio()[0]
    assert babble.std() > 0.05 and abs(len(babble) / 16000 - 1.5) < 1e-3


def test_rate_mismatch_and_unknown_category_are_errors(speech):
    _, cut = speech
    with pytest.raises(SpeechkitError, match="resample the noise first"):
        mix_noise(cut, [_cut("n", np.ones(8000, np.float32) * 0.1, 8000)], 10, random.Random(0))
    with pytest.raises(SpeechkitError, match="unknown noise category 'rain'"):
        synthesize_noise("rain", 1.0, 16000, 0)
