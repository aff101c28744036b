"""Noise for SQuTR: an offline noise set, and mixing a noise CutSet into speech at a target SNR with Lhotse.

SQuTR (Li et al., 2026, section 3.2) mixes 17 categories of real environmental noise at 20 / 10 / 0 dB. The category
list is not public; users with MUSAN import it with ``speechkit prepare musan`` and pass its cuts. Offline, this
module synthesizes a proxy with four categories (``speechkit bench squtr-noise``):

* ``babble``: six eSpeak NG talkers of different voices and prosody, each reading sentences back to back, summed
  at equal energy (a cafeteria / crowd proxy);
* ``pink`` (1/f power) and ``brown`` (1/f^2 power) noise (ventilation, traffic rumble);
* ``tones``: two to four sinusoids with slow amplitude modulation (alarms, hum, machinery).

SNR is Lhotse's (``lhotse.audio.mixer.AudioMixer``): ``SNR = 10 log10(E_speech / E_noise)`` with ``E = mean(x^2)``
over each whole track, the noise gain set so that ``E_noise = E_speech 10^(-SNR/10)``. :func:`mix_noise` cuts a
noise segment of exactly the speech's duration (seeded offset; a shorter noise is repeated) and mixes it with
``Cut.mix``, so the noise covers the whole utterance and the SNR measured over it is the target
(``CutSet.mix`` would leave the last 50 ms without noise).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Sequence

import numpy as np
from lhotse import CutSet, Recording
from lhotse.cut import Cut, MixedCut

from speechkit.data.synth import Synthesizer, draw_styles, resample
from speechkit.errors import SpeechkitError

log = logging.getLogger(__name__)
NOISE_CATEGORIES = ("babble", "pink", "brown", "tones")
NOISE_MANIFEST = "noise_cuts.jsonl.gz"
BABBLE_TALKERS = 6
BABBLE_SENTENCES = (
    "the weather has been strange all week and nobody knows what to wear",
    "could you pass me the menu when you have finished reading it",
    "we missed the last train home so we shared a taxi with a stranger",
    "my sister is moving to a new flat near the river next month",
    "the meeting ran late because the projector would not turn on",
    "he ordered the soup of the day and a glass of sparkling water",
    "they are building a new library where the old cinema used to be",
    "i think the match starts at eight but let me check the time",
    "the children were singing in the garden until it started to rain",
    "please remember to water the plants while we are away on holiday",
    "the bakery on the corner sells the best bread in the whole town",
    "she told me the story twice and it was funnier the second time",
)


def colored_noise(num_samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power spectrum ``1/f^exponent`` (0 white, 1 pink, 2 brown), unit RMS, ``(T,)``."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    frequencies = np.fft.rfftfreq(num_samples)
    frequencies[0] = frequencies[1]  # no infinite DC gain
    samples = np.fft.irfft(spectrum / frequencies ** (exponent / 2), n=num_samples)
    return (samples / np.sqrt(np.mean(samples**2))).astype(np.float32)


def tones(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Two to four sinusoids (150-3,000 Hz) with 0.2-2 Hz amplitude modulation, unit RMS, ``(T,)``."""
    time = np.arange(num_samples) / sample_rate
    mix = np.zeros(num_samples)
    for _ in range(rng.integers(2, 5)):
        carrier = np.sin(2 * np.pi * rng.uniform(150, 3000) * time + rng.uniform(0, 2 * np.pi))
        envelope = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * time + rng.uniform(0, 2 * np.pi))
        mix += rng.uniform(0.3, 1.0) * carrier * envelope
    return (mix / np.sqrt(np.mean(mix**2))).astype(np.float32)


def babble(num_samples: int, sample_rate: int, rng: np.random.Generator, synth: Synthesizer,
           sentences: Sequence[str] = BABBLE_SENTENCES, talkers: int = BABBLE_TALKERS) -> np.ndarray:
    """``talkers`` eSpeak NG voices each reading random ``sentences`` back to back, at equal energy, unit RMS."""
    styles = draw_styles("en", talkers, seed=int(rng.integers(1 << 30)))
    mix = np.zeros(num_samples)
    for style in styles:
        pieces, length = [np.zeros(int(rng.integers(0, sample_rate)), np.float32)], 0
        while length < num_samples:
            text = sentences[int(rng.integers(len(sentences)))]
            audio = synth.synthesize(text, style.voice, style.rate, style.pitch, style.pitch_range, style.variant)
            pieces.append(resample(audio, synth.sample_rate, sample_rate))
            length = sum(len(piece) for piece in pieces)
        track = np.concatenate(pieces)[:num_samples]
        mix += track / np.sqrt(np.mean(track**2))
    return (mix / np.sqrt(np.mean(mix**2))).astype(np.float32)


def synthesize_noise(category: str, seconds: float, sample_rate: int, seed: int,
                     synth: Synthesizer | None = None) -> np.ndarray:
    """One clip of an offline noise ``category`` (see the module docstring), unit RMS, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    num_samples = int(round(seconds * sample_rate))
    if category == "pink":
        return colored_noise(num_samples, 1.0, rng)
    if category == "brown":
        return colored_noise(num_samples, 2.0, rng)
    if category == "tones":
        return tones(num_samples, sample_rate, rng)
    if category == "babble":
        return babble(num_samples, sample_rate, rng, synth or Synthesizer())
    raise SpeechkitError(f"unknown noise category {category!r}; expected one of {', '.join(NOISE_CATEGORIES)}")


def build_noise_set(out_dir: str | Path, clips_per_category: int = 4, seconds: float = 10.0,
                    sample_rate: int = 16000, seed: int = 0,
                    categories: Sequence[str] = NOISE_CATEGORIES) -> CutSet:
    """Write the offline noise clips (16-bit FLAC, peak 0.5) and ``noise_cuts.jsonl.gz`` into ``out_dir``.

    Cut ids are ``<category>-<n>``; ``cut.custom["category"]`` names the category. Files already written by the
    same settings are kept (their names carry the settings).
    """
    import soundfile

    if clips_per_category < 1 or seconds <= 0:
        raise SpeechkitError(f"noise set: clips_per_category {clips_per_category} and seconds {seconds} must be > 0")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    synth = Synthesizer() if "babble" in categories else None
    cuts = []
    for c, category in enumerate(categories):
        for n in range(clips_per_category):
            path = out_dir / f"{category}-{n}_s{seed}_{seconds:g}s_{sample_rate}.flac"
            if not path.is_file():
                samples = synthesize_noise(category, seconds, sample_rate, seed * 1000 + c * 100 + n, synth)
                partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
                soundfile.write(partial, 0.5 * samples / np.max(np.abs(samples)), sample_rate, subtype="PCM_16",
                                format="FLAC")
                os.replace(partial, path)
            cut = Recording.from_file(path, recording_id=f"{category}-{n}").to_cut()
            cut.custom = {"category": category}
            cuts.append(cut)
    cut_set = CutSet.from_cuts(cuts)
    manifest = out_dir / NOISE_MANIFEST
    partial = out_dir / f".{os.getpid()}.partial.{NOISE_MANIFEST}"
    cut_set.to_file(partial)
    os.replace(partial, manifest)
    return cut_set


def noise_segment(noise: Cut, duration: float, rng: random.Random) -> Cut:
    """A piece of ``noise`` exactly ``duration`` seconds long: a random window of a longer noise, or a shorter one
    repeated (appended to itself) and cut."""
    if noise.duration >= duration:
        offset = rng.uniform(0.0, noise.duration - duration)
        return noise.truncate(offset=offset, duration=duration, preserve_id=True)
    repeated: Cut = noise
    while repeated.duration < duration:
        repeated = repeated.append(noise)
    return repeated.truncate(duration=duration, preserve_id=True)


def mix_noise(speech: Cut, noise_cuts: Sequence[Cut], snr: float, rng: random.Random) -> MixedCut:
    """``speech`` with a random noise cut mixed in at ``snr`` dB over its whole duration (Lhotse's SNR).

    Args:
        speech: the clean query.
        noise_cuts: cuts to draw from, at the speech's sampling rate.
        snr: target SNR in dB.
        rng: draws the noise cut and its offset (seed it for a reproducible mix).
    """
    if not noise_cuts:
        raise SpeechkitError("no noise cuts to mix in")
    noise = noise_cuts[rng.randrange(len(noise_cuts))]
    if noise.sampling_rate != speech.sampling_rate:
        raise SpeechkitError(f"noise {noise.id}: {noise.sampling_rate} Hz, speech {speech.id}: "
                             f"{speech.sampling_rate} Hz; resample the noise first (load_noise_cuts does)")
    return speech.mix(noise_segment(noise, speech.duration, rng), snr=snr, preserve_id="left")


def squtr_noise(out_dir: str, clips_per_category: int = 4, seconds: float = 10.0, seed: int = 0) -> None:
    """Synthesize the offline noise set (babble, pink, brown, tones) as FLAC files and a Lhotse cut manifest.

    Args:
        out_dir: folder for the clips and ``noise_cuts.jsonl.gz``.
        clips_per_category: clips of each category.
        seconds: length of every clip.
        seed: the random draws (noise, talkers, sentences).

    Examples:
        speechkit bench squtr-noise exp/squtr/noise --clips_per_category 4
    """
    cuts = build_noise_set(out_dir, clips_per_category, seconds, seed=seed)
    print(f"{Path(out_dir) / NOISE_MANIFEST}: {len(cuts)} clips, {sum(c.duration for c in cuts):.0f} s")
