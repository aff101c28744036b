"""Noise mixed into a padded waveform batch at a target SNR (issue 16: evaluation at 0 dB and other SNRs)."""

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import CutSet, Recording

from speechkit.data.augment import snr_db
from speechkit.data.noise_mix import NoiseBank
from speechkit.errors import SpeechkitError


def noise_manifest(folder, seconds: float = 0.5):
    rng = np.random.default_rng(0)
    path = folder / "noise.wav"
    sf.write(path, (0.3 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    manifest = folder / "noise_cuts.jsonl.gz"
    CutSet.from_manifests(recordings=[Recording.from_file(path)]).to_file(manifest)
    return manifest


@pytest.mark.parametrize("snr", [20.0, 0.0, -5.0])
def test_mixed_batch_has_the_target_snr_on_valid_samples_and_keeps_padding(tmp_path, snr):
    bank = NoiseBank(noise_manifest(tmp_path))
    speech = torch.randn(2, 16000) * torch.tensor([[0.1], [0.02]])
    lens = torch.tensor([16000, 9000])  # longer than the 0.5 s of noise: the bank repeats
    speech[1, 9000:] = 0
    mixed = bank.mix(speech, lens, snr, torch.Generator().manual_seed(0))
    for row, n in enumerate(lens.tolist()):  # quiet speech: no peak rescaling, the noise is mixed - speech
        noise = (mixed[row, :n] - speech[row, :n]).numpy()
        assert snr_db(speech[row, :n].numpy(), noise) == pytest.approx(snr, abs=1e-3)
    assert torch.equal(mixed[1, 9000:], torch.zeros(7000))
    again = bank.mix(speech, lens, snr, torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again)  # the same generator state gives the same noise


def test_a_missing_noise_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(SpeechkitError, match="no such file"):
        NoiseBank(tmp_path / "missing.jsonl.gz")
