"""Noise mixed into a padded waveform batch at a target SNR, inside a task (the clean audio stays for teachers).

Each utterance's valid samples are mixed by ``speechkit.data.augment.mix_at_snr`` (Lhotse's SNR,
``10 log10(E_speech / E_noise)`` with ``E = mean(x^2)``; the mix scaled down as a whole where it would clip). The
noise is a window of a bank of noise clips (a Lhotse cut manifest, e.g. the babble of ``speechkit bench
squtr-noise``), repeated when shorter than the utterance.

Dimension legend: ``B`` utterances, ``S`` samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch

from speechkit.data.augment import mix_at_snr
from speechkit.errors import SpeechkitError


def load_noise_cuts(path: Union[str, Path], sample_rate: int = 16000) -> list:
    """Noise cuts from a Lhotse cut or recording manifest (e.g. ``speechkit prepare musan``'s), at ``sample_rate``."""
    from lhotse import CutSet, load_manifest

    path = Path(path)
    if not path.is_file():
        raise SpeechkitError(f"noise {path}: no such file (expected a Lhotse cut or recording manifest)")
    manifest = load_manifest(path)
    cuts = list(manifest if isinstance(manifest, CutSet) else CutSet.from_manifests(recordings=manifest))
    if not cuts:
        raise SpeechkitError(f"noise {path}: no cuts")
    return [cut if cut.sampling_rate == sample_rate else cut.resample(sample_rate) for cut in cuts]


class NoiseBank:
    """Noise clips from a Lhotse cut manifest, concatenated, mixed into batches at an SNR.

    Args:
        path: a Lhotse cut (or recording) manifest of noise clips.
        sampling_rate: the speech's rate; clips at another rate are resampled.
    """

    def __init__(self, path: Union[str, Path], sampling_rate: int = 16000) -> None:
        clips = []
        for cut in load_noise_cuts(path, sampling_rate):
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
                noise = self.segment(n, generator).numpy()
                mixed = mix_at_snr(waveform[row, :n].detach().float().cpu().numpy(), noise, snr)
                out[row, :n] = torch.from_numpy(mixed).to(waveform)
        return out
