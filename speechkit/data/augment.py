"""On-the-fly augmentation: speed perturbation and noise at a target SNR (on cuts), SpecAugment (on features).

All three are Lhotse's (``PerturbSpeed``, ``CutMix``, ``SpecAugment``); this module only builds them from
``DataConfig`` so that every task switches them the same way.
"""

from __future__ import annotations

import random
from typing import Callable, Optional

import numpy as np
from lhotse import CutSet
from lhotse.dataset import CutMix, PerturbSpeed, SpecAugment

from speechkit.data.config import DataConfig

CutTransform = Callable[[CutSet], CutSet]


def cut_transforms(config: DataConfig, noise_cuts: Optional[CutSet] = None) -> list[CutTransform]:
    """Training-time cut transforms, in order: speed perturbation, then noise mixing."""
    transforms: list[CutTransform] = []
    if config.speed_perturb:
        transforms.append(
            PerturbSpeed(
                factors=list(config.speed_perturb),
                p=config.speed_perturb_prob,
                randgen=random.Random(config.seed),
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
                seed=config.seed,
                random_mix_offset=True,
            )
        )
    return transforms


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
