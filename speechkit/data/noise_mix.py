"""Noise mixed into a padded waveform batch at a target SNR, inside a task (the clean audio stays for teachers).

The SNR is Lhotse's (as ``speechkit.bench.noise.mix_noise`` and ``speechkit.data.augment.snr_db``):
``SNR = 10 log10(E_speech / E_noise)`` with ``E = mean(x^2)`` over the utterance's valid samples, the noise gain
set so that ``E_noise = E_speech 10^(-SNR/10)``. The noise is a window of a bank of noise clips (a Lhotse cut
manifest, e.g. the babble of ``speechkit bench squtr-noise``), repeated when shorter than the utterance.

Dimension legend: ``B`` utterances, ``S`` samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from speechkit.errors import SpeechkitError


def mix_at_snr(speech: torch.Tensor, noise: torch.Tensor, snr: float) -> torch.Tensor:
    """``speech + g * noise`` for 1-D tensors of equal length, ``g`` giving ``snr`` dB (Lhotse's definition)."""
    if speech.shape != noise.shape:
        raise SpeechkitError(f"speech {tuple(speech.shape)} and noise {tuple(noise.shape)} differ in shape")
    speech_energy = speech.float().pow(2).mean()
    noise_energy = noise.float().pow(2).mean().clamp(min=1e-12)
    gain = torch.sqrt(speech_energy / (noise_energy * 10 ** (snr / 10)))
    return speech + gain.to(speech.dtype) * noise


class NoiseBank:
    """Noise clips from a Lhotse cut manifest, concatenated, mixed into batches at an SNR.

    Args:
        path: a Lhotse cut (or recording) manifest of noise clips.
        sampling_rate: the speech's rate; clips at another rate are resampled.
    """

    def __init__(self, path: Union[str, Path], sampling_rate: int = 16000) -> None:
        from lhotse import CutSet, load_manifest

        path = Path(path)
        if not path.is_file():
            raise SpeechkitError(f"noise {path}: no such file (expected a Lhotse cut or recording manifest)")
        manifest = load_manifest(path)
        cuts = list(manifest if isinstance(manifest, CutSet) else CutSet.from_manifests(recordings=manifest))
        if not cuts:
            raise SpeechkitError(f"noise {path}: no cuts")
        clips = []
        for cut in cuts:
            cut = cut if cut.sampling_rate == sampling_rate else cut.resample(sampling_rate)
            audio = torch.from_numpy(cut.load_audio()).float()
            clips.append(audio[0] if audio.dim() == 2 else audio)
        self.samples = torch.cat(clips)  # (N,)
        if float(self.samples.pow(2).mean()) == 0.0:
            raise SpeechkitError(f"noise {path}: the clips are silent")

    def segment(self, length: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """A window of ``length`` samples at a random offset (wrapping round the bank)."""
        start = int(torch.randint(self.samples.numel(), (), generator=generator))
        index = (start + torch.arange(length)) % self.samples.numel()
        return self.samples[index]

    def mix(self, waveform: torch.Tensor, lens: torch.Tensor, snr: float,
            generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(B, S)`` padded batch -> the same with noise at ``snr`` dB on each utterance's valid samples."""
        out = waveform.clone()
        for row, n in enumerate(lens.tolist()):
            if n > 0:
                noise = self.segment(n, generator).to(waveform)
                out[row, :n] = mix_at_snr(waveform[row, :n], noise, snr)
        return out
