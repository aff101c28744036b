"""Griffin-Lim speech out: Whisper log-mel -> waveform -> log-mel again is close, and keeps the pitch."""

import numpy as np
import pytest
import torch
from lhotse.features.whisper_fbank import WhisperFbank, WhisperFbankConfig

from speechkit.errors import SpeechkitError
from speechkit.models.griffin_lim import griffin_lim, mel_to_power_spectrogram, whisper_mel_power


def _chirp(seconds=0.8, rate=16000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * (300 + 1500 * t / t[-1]) * t)).astype(
        np.float32)


def test_round_trip_of_a_tone_and_a_chirp(one_thread):
    extractor = WhisperFbank(WhisperFbankConfig(num_filters=80))
    mels = torch.as_tensor(extractor.extract(_chirp(), 16000))  # (T, F)
    torch.manual_seed(0)
    wave = griffin_lim(mels)
    assert wave.shape == (160 * (mels.shape[0] - 1),)
    again = torch.as_tensor(extractor.extract(wave.numpy(), 16000))
    n = min(len(mels), len(again))
    assert float((mels[:n] - again[:n]).abs().mean()) < 0.1  # log-mel units (the features span about 2)
    spectrum = np.abs(np.fft.rfft(wave.numpy()[: 16000 // 2]))
    assert abs(np.argmax(spectrum) * 2 - 440) <= 4  # the steady 440 Hz tone is the loudest bin (2 Hz bins)


def test_mel_inversion_fits_the_mel_power(one_thread):
    mels = torch.as_tensor(WhisperFbank(WhisperFbankConfig(num_filters=80)).extract(_chirp(0.3), 16000))
    power = whisper_mel_power(mels)
    spectrum = mel_to_power_spectrogram(power)
    import torchaudio

    filters = torchaudio.functional.melscale_fbanks(201, 0.0, 8000, 80, 16000, norm="slaney", mel_scale="slaney").T
    assert spectrum.min() >= 0 and float((filters @ spectrum - power).abs().sum() / power.sum()) < 0.01


def test_bad_input():
    with pytest.raises(SpeechkitError, match="expected \\(T >= 2 frames"):
        griffin_lim(torch.zeros(80))
    with pytest.raises(SpeechkitError, match="iterations=0"):
        griffin_lim(torch.zeros(5, 80), iterations=0)
