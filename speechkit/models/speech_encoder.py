"""A small speech encoder for masked speech modelling and CTC: fbank -> 4x conv subsampling -> Conformer.

Features are normalized per utterance (mean and variance over its valid frames), two Conv1d (kernel 5, stride 2) +
GELU layers subsample them 4x (10 ms fbank -> 40 ms frames), and ``torchaudio.models.Conformer`` encodes. Masked
speech modelling replaces the masked subsampled frames by one learned embedding before the Conformer (wav2vec 2.0,
Baevski et al. 2020, section 2; w2v-BERT, Chung et al. 2021, section 3.1). The same module, with the same
parameter names, is the encoder of the CTC task, so pretrained weights load by name.

Dimension legend: ``B`` utterances, ``T`` fbank frames, ``F`` mel bins, ``T'`` encoder frames, ``D`` model width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import torch
from torch import nn
from torch.nn import functional as F
from torchaudio.models import Conformer

from speechkit.errors import SpeechkitError, dataclass_fields_from
from speechkit.tensors import lengths_to_mask

SUBSAMPLING = 4  # two stride-2 convolutions
FBANK_FRAME_SHIFT = 0.01  # seconds (Lhotse's Fbank default)


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of :class:`SpeechEncoder`.

    Args:
        num_mel_bins: ``F``, as in the data config.
        dim: ``D``, width of the subsampler and the Conformer.
        num_layers: Conformer blocks.
        num_heads: attention heads (``dim`` must divide by it).
        ffn_dim: feed-forward width.
        conv_kernel: depthwise convolution kernel of the Conformer blocks (odd).
        dropout: dropout in the Conformer blocks.
    """

    num_mel_bins: int = 80
    dim: int = 144
    num_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 576
    conv_kernel: int = 15
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if min(self.num_mel_bins, self.dim, self.num_layers, self.num_heads, self.ffn_dim) < 1:
            raise SpeechkitError(f"encoder sizes must be >= 1, got {self}")
        if self.dim % self.num_heads:
            raise SpeechkitError(f"encoder dim {self.dim} must be a multiple of num_heads {self.num_heads}")
        if self.conv_kernel % 2 == 0:
            raise SpeechkitError(f"encoder conv_kernel must be odd, got {self.conv_kernel}")


def encoder_config(value: Union[EncoderConfig, Mapping[str, Any]]) -> EncoderConfig:
    """An ``EncoderConfig`` from itself or from its fields as a dict (a checkpoint's hyper-parameters)."""
    if isinstance(value, EncoderConfig):
        return value
    return EncoderConfig(**dataclass_fields_from(value, EncoderConfig, "encoder"))


def encoder_frames(lens: torch.Tensor) -> torch.Tensor:
    """Encoder frames ``T'`` of ``T`` fbank frames: ``ceil(ceil(T / 2) / 2)`` (two stride-2 convolutions)."""
    return _halve(_halve(lens))


def normalize_utterances(feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """``(B, T, F)`` -> each utterance's valid frames to zero mean, unit variance per bin; padding to 0."""
    mask = lengths_to_mask(lens, feats.shape[1]).unsqueeze(-1).to(feats.dtype)  # (B, T, 1)
    count = lens.clamp(min=1)[:, None, None].to(feats.dtype)
    mean = (feats * mask).sum(1, keepdim=True) / count
    var = (((feats - mean) * mask) ** 2).sum(1, keepdim=True) / count
    return (feats - mean) / (var + 1e-5).sqrt() * mask


def _halve(lens: torch.Tensor) -> torch.Tensor:
    return torch.div(lens - 1, 2, rounding_mode="floor") + 1


class Subsampler(nn.Module):
    """``(B, T, F)`` -> ``(B, T', D)``: two Conv1d (kernel 5, stride 2, padding 2) + GELU; the frames past each
    utterance's end are zeroed after each convolution, so an utterance's output does not depend on its padding."""

    def __init__(self, num_mel_bins: int, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(num_mel_bins, dim, kernel_size=5, stride=2, padding=2)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size=5, stride=2, padding=2)

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)  # (B, F, T)
        for conv in (self.conv1, self.conv2):
            lens = _halve(lens)
            x = F.gelu(conv(x))
            x = x * lengths_to_mask(lens, x.shape[2])[:, None, :].to(x.dtype)
        return x.transpose(1, 2)  # (B, T', D)


class SpeechEncoder(nn.Module):
    """fbank ``(B, T, F)`` -> hidden states ``(B, T', D)``, optionally with masked frames (see the module docstring)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.subsampler = Subsampler(config.num_mel_bins, config.dim)
        self.project = nn.Linear(config.dim, config.dim)
        self.mask_embedding = nn.Parameter(torch.empty(config.dim).uniform_())  # wav2vec2's initialisation
        self.conformer = Conformer(
            input_dim=config.dim, num_heads=config.num_heads, ffn_dim=config.ffn_dim, num_layers=config.num_layers,
            depthwise_conv_kernel_size=config.conv_kernel, dropout=config.dropout,
        )
        self._keep: Optional[torch.Tensor] = None  # (B, 1, T') valid frames of the batch being encoded
        for layer in self.conformer.conformer_layers:  # zero the padding before each depthwise convolution
            layer.conv_module.sequential[2].register_forward_pre_hook(self._mask_padding)

    def _mask_padding(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """torchaudio's Conformer convolves over padded frames; zeroing them first keeps an utterance's encoding
        independent of the batch it is in (attention already masks them; BatchNorm uses running stats in eval)."""
        return (args[0] * self._keep,) if self._keep is not None else args

    def subsample(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized, subsampled and projected frames ``(B, T', D)`` and their lengths ``(B,)``."""
        if feats.dim() != 3 or feats.shape[-1] != self.config.num_mel_bins:
            raise SpeechkitError(f"encoder input: expected (B, T, {self.config.num_mel_bins}) features, got "
                                 f"{tuple(feats.shape)}")
        x = self.project(self.subsampler(normalize_utterances(feats, lens), lens))
        return x, encoder_frames(lens)

    def forward(self, feats: torch.Tensor, lens: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states ``(B, T', D)`` and lengths ``(B,)``; ``mask`` ``(B, T')`` frames become the mask embedding."""
        x, out_lens = self.subsample(feats, lens)
        if mask is not None:
            if mask.shape != x.shape[:2]:
                raise SpeechkitError(f"mask: expected shape {tuple(x.shape[:2])} (encoder frames), got "
                                     f"{tuple(mask.shape)}")
            x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        self._keep = lengths_to_mask(out_lens, x.shape[1])[:, None, :].to(x.dtype)
        try:
            hidden, out_lens = self.conformer(x, out_lens)
        finally:
            self._keep = None
        return hidden, out_lens
