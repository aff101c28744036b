"""Masked-prediction targets: k-means codes of stacked input features, one code per encoder frame.

w2v-BERT (Chung et al. 2021, section 3.1) predicts quantizer ids at the masked frames; HuBERT's first iteration
(Hsu et al. 2021, section III-C) takes the ids from k-means on MFCCs. Here the quantizer is k-means on the
utterance-normalized fbank frames stacked ``SUBSAMPLING`` (4) at a time, so there is one target per encoder frame
(40 ms), fitted once on training features (``fit_codebook``; ``speechkit msm-codebook``) and frozen.

Dimension legend: ``B`` utterances, ``T`` fbank frames, ``F`` mel bins, ``T'`` encoder frames, ``K`` codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import torch
from torch import nn
from torch.nn import functional as F

from speechkit.checkpoints import load_checkpoint, save_atomic
from speechkit.errors import SpeechkitError
from speechkit.models.speech_encoder import SUBSAMPLING, encoder_frames, normalize_utterances

CODEBOOK_FORMAT = "speechkit-kmeans-codebook-1"


def stack_frames(feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """``(B, T, F)`` -> ``(B, T', 4F)``: normalized frames stacked four at a time (the last group zero-padded)."""
    x = normalize_utterances(feats, lens)
    groups = int(encoder_frames(torch.tensor(x.shape[1])))
    x = F.pad(x, (0, 0, 0, groups * SUBSAMPLING - x.shape[1]))
    return x.reshape(x.shape[0], groups, SUBSAMPLING * x.shape[2])


def fit_codebook(vectors: torch.Tensor, num_codes: int, seed: int = 0) -> torch.Tensor:
    """k-means centroids ``(K, d)`` of ``vectors`` ``(N, d)`` (scikit-learn's mini-batch k-means, k-means++ init)."""
    from sklearn.cluster import MiniBatchKMeans

    if num_codes < 2:
        raise SpeechkitError(f"num_codes: expected >= 2, got {num_codes}")
    if vectors.dim() != 2 or vectors.shape[0] < num_codes:
        raise SpeechkitError(f"k-means needs at least num_codes={num_codes} feature vectors, got "
                             f"{tuple(vectors.shape)}; give more cuts or fewer codes")
    kmeans = MiniBatchKMeans(n_clusters=num_codes, batch_size=4096, n_init=3, random_state=seed)
    kmeans.fit(vectors.double().numpy())
    return torch.from_numpy(kmeans.cluster_centers_).float()


def save_codebook(codebook: torch.Tensor, num_mel_bins: int, path: Union[str, Path]) -> None:
    """Write a codebook file atomically (a plain dict of a tensor and ints: loads with ``weights_only``)."""
    save_atomic({"format": CODEBOOK_FORMAT, "codebook": codebook.contiguous(), "num_mel_bins": num_mel_bins,
                 "stack": SUBSAMPLING}, path)


def load_codebook(path: Union[str, Path], num_mel_bins: int) -> torch.Tensor:
    """The ``(K, 4F)`` codebook of a file written by :func:`save_codebook`; a wrong file or size names ``path``."""
    try:
        data = load_checkpoint(path)
    except SpeechkitError as error:
        raise SpeechkitError(f"codebook {path}: not a codebook file written by speechkit msm-codebook ({error})") \
            from None
    if data.get("format") != CODEBOOK_FORMAT:
        raise SpeechkitError(f"codebook {path}: not a k-means codebook (write one with speechkit msm-codebook)")
    if data["num_mel_bins"] != num_mel_bins or data["stack"] != SUBSAMPLING:
        raise SpeechkitError(f"codebook {path}: fitted on {data['num_mel_bins']} mel bins x {data['stack']} frames; "
                             f"the task takes {num_mel_bins} x {SUBSAMPLING}")
    return data["codebook"].float()


class KMeansQuantizer(nn.Module):
    """Frozen k-means codebook: features -> code ids per encoder frame."""

    def __init__(self, codebook: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("codebook", codebook.float())  # (K, 4F), saved in checkpoints

    @property
    def num_codes(self) -> int:
        return self.codebook.shape[0]

    @torch.no_grad()
    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Code ids ``(B, T')`` (nearest centroid in Euclidean distance; padded frames get some id, mask them)."""
        stacked = stack_frames(feats.float(), lens)  # (B, T', 4F)
        distances = torch.cdist(stacked, self.codebook.unsqueeze(0).expand(stacked.shape[0], -1, -1))
        return distances.argmin(-1)
