"""On-the-fly augmentation: speed perturbation and noise at a target SNR (on cuts), SpecAugment (on features);
offline: noise mixed into a waveform at an SNR, pitch shifting (synthesized test conditions).

All three are Lhotse's (``PerturbSpeed``, ``CutMix``, ``SpecAugment``); this module only builds them from
``DataConfig`` so that every task switches them the same way. The cut-level two run as ``BatchAugment``, whose draws
are a function of the batch's position (seed, rank, epoch, index): a resumed run reproduces them exactly.
SpecAugment draws from the global generators in the DataLoader worker (not reproduced across a resume).
"""

from __future__ import annotations

import random
from typing import Callable, Optional

import numpy as np
from lhotse import CutSet
from lhotse.dataset import CutMix, PerturbSpeed, SpecAugment

from speechkit.data.config import DataConfig
from speechkit.errors import SpeechkitError

CutTransform = Callable[[CutSet], CutSet]


def cut_transforms(
    config: DataConfig, noise_cuts: Optional[CutSet] = None, rng: Optional[random.Random] = None
) -> list[CutTransform]:
    """Training-time cut transforms, in order: speed perturbation, then noise mixing; both draw from ``rng``
    (default: a ``random.Random(config.seed)`` of their own)."""
    rng = rng if rng is not None else random.Random(config.seed)
    transforms: list[CutTransform] = []
    if config.speed_perturb:
        transforms.append(
            PerturbSpeed(
                factors=list(config.speed_perturb),
                p=config.speed_perturb_prob,
                randgen=rng,
                preserve_id=True,
            )
        )
    if noise_cuts is not None:
        transforms.append(
            CutMix(
                cuts=noise_cuts,
                snr=tuple(config.noise_snr),
                p=config.noise_prob,
                preserve_id=True,
                seed=rng,
                random_mix_offset=True,
            )
        )
    return transforms


class BatchAugment:
    """The cut transforms of training batches, with random draws fixed by ``(seed, rank, epoch, batch index)``.

    The random generator the transforms share is re-seeded before every batch from the run's seed, the rank, the
    epoch and the batch's index in the epoch, so the augmentation of a batch depends on nothing else: a run resumed
    mid-epoch (which restores the epoch and skips the batches already trained on) draws exactly what the
    uninterrupted run drew, whatever the number of DataLoader workers or prefetched batches; DDP ranks draw
    differently. Applied by the training sampler (in the main process) before a batch goes to a worker.

    Args:
        transforms: cut transforms drawing from ``rng`` (see :func:`cut_transforms`).
        rng: their shared generator.
        seed: the run's data seed.
        rank: this process's rank.
    """

    def __init__(self, transforms: list[CutTransform], rng: random.Random, seed: int, rank: int = 0) -> None:
        self.transforms, self.rng, self.seed, self.rank = list(transforms), rng, seed, rank

    @classmethod
    def from_config(cls, config: DataConfig, noise_cuts: Optional[CutSet] = None,
                    rank: int = 0) -> Optional["BatchAugment"]:
        """Speed perturbation and noise mixing as the config sets them; ``None`` when both are off."""
        rng = random.Random(config.seed)
        transforms = cut_transforms(config, noise_cuts, rng)
        return cls(transforms, rng, config.seed, rank) if transforms else None

    def batch_seed(self, epoch: int, index: int) -> str:
        """The seed of batch ``index`` (0-based, in the epoch) of ``epoch``."""
        return f"speechkit-augment:{self.seed}:{self.rank}:{epoch}:{index}"

    def __call__(self, cuts: CutSet, epoch: int, index: int) -> CutSet:
        self.rng.seed(self.batch_seed(epoch, index))
        for transform in self.transforms:
            cuts = transform(cuts)
        return cuts


def spec_augment(config: DataConfig) -> Optional[SpecAugment]:
    """Lhotse's SpecAugment from the config, or ``None`` when off or when the input is a waveform."""
    if not config.spec_augment or config.input == "waveform":
        return None
    return SpecAugment(
        time_warp_factor=config.spec_augment_time_warp or None,
        num_feature_masks=config.spec_augment_freq_masks,
        features_mask_size=config.spec_augment_freq_width,
        num_frame_masks=config.spec_augment_time_masks,
        max_frames_mask_fraction=config.spec_augment_max_time_fraction,
    )


def snr_db(speech: np.ndarray, noise: np.ndarray) -> float:
    """``10 log10(E_speech / E_noise)`` with energies ``mean(x^2)``, as Lhotse's mixer defines SNR."""
    return float(10 * np.log10(np.mean(speech**2) / np.mean(noise**2)))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """``speech + g noise`` with ``g`` such that ``snr_db(speech, g noise) == snr`` (``(T,)`` each), scaled down as a
    whole (SNR kept) where the mix would exceed a peak of 1."""
    if speech.shape != noise.shape or speech.ndim != 1:
        raise SpeechkitError(f"mix_at_snr: expected speech and noise of one shape (T,), got {speech.shape} and "
                             f"{noise.shape}")
    gain = np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (snr / 10))
    mix = speech + gain * noise
    peak = float(np.max(np.abs(mix)))
    return (mix / peak if peak > 1.0 else mix).astype(np.float32)


def shift_pitch(samples: np.ndarray, sample_rate: int, semitones: int) -> np.ndarray:
    """``samples`` ``(T,)`` with every frequency multiplied by ``2^(semitones/12)``, the duration kept
    (``torchaudio.functional.pitch_shift``: phase vocoder, then resampling)."""
    import torch
    from torchaudio.functional import pitch_shift

    shifted = pitch_shift(torch.as_tensor(samples, dtype=torch.float32)[None], sample_rate, int(semitones))[0]
    return shifted.clamp(-1.0, 1.0).numpy()
