"""Tensor conventions shared by every module: the label ignore index and masks from lengths."""

from __future__ import annotations

import torch

IGNORE_INDEX = -100
"""Label value that losses skip (PyTorch's ``cross_entropy`` default; prompt and padding positions)."""


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_len)`` boolean mask, True at valid positions (on ``lengths``' device)."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
