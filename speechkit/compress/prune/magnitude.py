"""Magnitude pruning: zero the smallest-|w| fraction of a weight (the baseline SparseGPT is measured against)."""

from __future__ import annotations

import torch
from torch import Tensor

from speechkit.errors import SpeechkitError


def check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    """Return ``sparsity`` if it is a number in [0, 1), else raise ``SpeechkitError`` naming ``name``."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise SpeechkitError(f"{name} must be a number in [0, 1), got {sparsity!r}")
    return float(sparsity)


def smallest_mask(scores: Tensor, sparsity: float) -> Tensor:
    """Boolean mask (True = pruned) of the ``int(sparsity * numel)`` smallest ``scores`` (ties broken by index)."""
    check_sparsity(sparsity)
    n_prune = int(sparsity * scores.numel())
    mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
    if n_prune:
        mask[torch.argsort(scores.flatten(), stable=True)[:n_prune]] = True
    return mask.reshape(scores.shape)


def magnitude_mask(weight: Tensor, sparsity: float) -> Tensor:
    """Keep-mask (True = kept) of ``weight`` after pruning the smallest-magnitude ``sparsity`` fraction."""
    return ~smallest_mask(weight.detach().abs(), sparsity)


def magnitude_prune(weight: Tensor, sparsity: float) -> Tensor:
    """Return a copy of ``weight`` with its ``int(sparsity * numel)`` smallest-|w| entries set to 0.

    Args:
        weight: any shape, usually ``(out, in)``.
        sparsity: fraction of entries to zero, in [0, 1).
    """
    return weight * magnitude_mask(weight, sparsity)
