"""A small convolutional utterance encoder: log-mel ``(B, T, F)`` -> ``(B, D)`` (the classifier's encoder)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.tensors import lengths_to_mask


class ConvBlock(nn.Module):
    """Conv1d (kernel 5, stride 2) + GELU on ``(B, T, C)`` -> ``(B, T', D)``: channels last, so that a hook on the
    block (NoiseFiT) sees the hidden size as the last dimension."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size=5, stride=2, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)


class ConvEncoder(nn.Module):
    """Stack of :class:`ConvBlock` over ``(B, T, F)`` features -> ``(B, D)`` by masked mean pooling."""

    def __init__(self, num_mel_bins: int, hidden: int, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1 or hidden < 1:
            raise SpeechkitError(f"num_layers, hidden: expected >= 1, got {num_layers}, {hidden}")
        sizes = [num_mel_bins] + [hidden] * num_layers
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        mask = lengths_to_mask(lens, feats.shape[1]).unsqueeze(-1)  # (B, T, 1)
        mean = (feats * mask).sum(1, keepdim=True) / lens[:, None, None]
        var = (((feats - mean) * mask) ** 2).sum(1, keepdim=True) / lens[:, None, None]
        x = (feats - mean) / (var + 1e-5).sqrt() * mask  # (B, T, F), utterance-normalized
        for block in self.blocks:
            x = block(x)  # (B, T', D)
            lens = (lens - 1) // 2 + 1
        keep = lengths_to_mask(lens, x.shape[1]).unsqueeze(-1)  # (B, T', 1)
        return (x * keep).sum(1) / lens[:, None]  # (B, D)
