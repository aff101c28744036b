"""``speechkit msm-codebook CUTS OUT``: the k-means codebook whose codes ``MaskedSpeechPretrain`` predicts.

Features are the data module's (``input: fbank``), utterance-normalized and stacked four frames at a time, one
vector per encoder frame (``speechkit.models.quantizer``); frames of shuffled cuts are collected up to
``max_frames`` and clustered with scikit-learn's mini-batch k-means.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import torch

from speechkit.commands import command
from speechkit.data import DataConfig, SpeechDataset, load_cuts
from speechkit.models.quantizer import fit_codebook, save_codebook, stack_frames
from speechkit.models.speech_encoder import encoder_frames
from speechkit.progress import progress_bar
from speechkit.tensors import lengths_to_mask

log = logging.getLogger(__name__)


def codebook_vectors(cuts: str, num_mel_bins: int, max_frames: int, seed: int = 0,
                     batch_cuts: int = 32, sampling_rate: int = 16000) -> tuple[torch.Tensor, int]:
    """Stacked feature vectors ``(N, 4F)`` of the cuts in random order, up to ``max_frames``; and the cuts read."""
    cut_set = load_cuts(cuts, "cuts").to_eager().resample(sampling_rate)
    order = list(cut_set.ids)
    random.Random(seed).shuffle(order)
    dataset = SpeechDataset(DataConfig(input="fbank", num_mel_bins=num_mel_bins, sampling_rate=sampling_rate))
    vectors, total, read = [], 0, 0
    bar = progress_bar(desc="msm-codebook: features", total=max_frames, unit="frame")
    for start in range(0, len(order), batch_cuts):
        batch = dataset[cut_set.subset(cut_ids=order[start:start + batch_cuts])]
        lens = encoder_frames(batch.input_lens)
        stacked = stack_frames(batch.inputs, batch.input_lens)  # (B, T', 4F)
        valid = stacked[lengths_to_mask(lens, stacked.shape[1])]  # (N_b, 4F)
        vectors.append(valid)
        total, read = total + valid.shape[0], read + len(batch)
        bar.update(min(valid.shape[0], max(max_frames - bar.n, 0)))
        if total >= max_frames:
            break
    bar.close()
    return torch.cat(vectors)[:max_frames], read


@command(positional=("cuts", "out"))
def msm_codebook(cuts: str, out: str, *, num_codes: int = 100, num_mel_bins: int = 80, max_frames: int = 100_000,
                 seed: int = 0) -> None:
    """Fit the k-means codebook of masked-prediction targets on training features and write it atomically.

    Args:
        cuts: Lhotse cut manifest(s) of the (unlabelled) training data.
        out: the codebook file to write (``.pt``); ``model.init_args.codebook`` of ``conf/msm/*.yaml``.
        num_codes: ``K``, k-means centroids (targets of the masked prediction).
        num_mel_bins: fbank bins, as in the data config.
        max_frames: encoder frames (40 ms each) read at most, from cuts in an order drawn from ``seed``.
        seed: cut order and k-means initialisation.

    Examples:
        speechkit msm-codebook exp/ask2mask/pretrain/cuts_train.jsonl.gz exp/ask2mask/codebook.pt --num_codes 100
    """
    start = time.perf_counter()
    vectors, read = codebook_vectors(cuts, num_mel_bins, max_frames, seed)
    codebook = fit_codebook(vectors, num_codes, seed)
    save_codebook(codebook, num_mel_bins, Path(out))
    print(f"msm-codebook: {num_codes} codes of {codebook.shape[1]} dims fitted on {vectors.shape[0]} frames of {read} "
          f"cuts in {time.perf_counter() - start:.1f} s -> {out}")
