"""Audio and text towers of a contrastive audio-text retriever, each giving one embedding per input.

The usual baseline of the audio-text retrieval task (DCASE 2022-2023 task 6b: an audio encoder and a text encoder
trained with a symmetric InfoNCE loss, Oord et al. 2018 "Representation Learning with Contrastive Predictive
Coding" eq. 4, in CLIP's symmetric form, Radford et al. 2021 "Learning Transferable Visual Models From Natural
Language Supervision" figure 3). Audio: :class:`~speechkit.models.captioner.GlobalNormEncoder` (the captioner's
encoder, so both retrievers see the same features) with masked mean pooling; text: word embeddings, a small
Transformer encoder and masked mean pooling; each projected to ``E`` dimensions.

Dimension legend: ``B`` audios, ``C`` captions, ``U`` tokens, ``T'`` encoder frames, ``E`` embedding size.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from speechkit.errors import SpeechkitError
from speechkit.models.captioner import GlobalNormEncoder
from speechkit.models.speech_encoder import EncoderConfig
from speechkit.tensors import lengths_to_mask
from speechkit.text.words import PAD


@dataclass(frozen=True)
class TextEncoderConfig:
    """Sizes of :class:`TextEncoder`.

    Args:
        dim: width.
        num_layers: Transformer encoder layers.
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        dropout: dropout in the layers.
        max_tokens: longest caption in tokens (``<bos>``/``<eos>`` included).
    """

    dim: int = 128
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.1
    max_tokens: int = 40

    def __post_init__(self) -> None:
        if min(self.dim, self.num_layers, self.num_heads, self.ffn_dim, self.max_tokens) < 1:
            raise SpeechkitError(f"text encoder sizes must be >= 1, got {self}")
        if self.dim % self.num_heads:
            raise SpeechkitError(f"text encoder dim {self.dim} must be a multiple of num_heads {self.num_heads}")


def text_encoder_config(value: TextEncoderConfig | Mapping[str, Any]) -> TextEncoderConfig:
    """A ``TextEncoderConfig`` from itself or from its fields as a dict (a checkpoint's hyper-parameters)."""
    if isinstance(value, TextEncoderConfig):
        return value
    unknown = sorted(set(value) - {f.name for f in fields(TextEncoderConfig)})
    if unknown:
        raise SpeechkitError(f"text encoder: unknown keys {unknown}; expected some of "
                             f"{[f.name for f in fields(TextEncoderConfig)]}")
    return TextEncoderConfig(**value)


def masked_mean(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` -> ``(B, D)``: the mean over each row's first ``lens`` steps."""
    keep = lengths_to_mask(lens, x.shape[1]).unsqueeze(-1).to(x.dtype)
    return (x * keep).sum(1) / lens.clamp(min=1)[:, None].to(x.dtype)


class TextEncoder(nn.Module):
    """Token ids ``(C, U)`` (``<bos>`` ... ``<eos>``, padded) -> ``(C, dim)`` by masked mean pooling."""

    def __init__(self, vocab_size: int, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab_size, config.dim, padding_idx=PAD)
        self.position = nn.Embedding(config.max_tokens, config.dim)
        layer = nn.TransformerEncoderLayer(config.dim, config.num_heads, config.ffn_dim, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, config.num_layers, norm=nn.LayerNorm(config.dim),
                                            enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[1] > self.config.max_tokens:
            raise SpeechkitError(f"caption of {tokens.shape[1]} tokens is longer than the text encoder's max_tokens "
                                 f"{self.config.max_tokens}")
        x = self.embed(tokens) + self.position(torch.arange(tokens.shape[1], device=tokens.device))
        x = self.layers(x, src_key_padding_mask=~lengths_to_mask(lens, tokens.shape[1]))
        return masked_mean(x, lens)


class DualEncoder(nn.Module):
    """Audio tower (``GlobalNormEncoder`` + mean pooling + projection) and text tower, both to ``E`` dims."""

    def __init__(self, vocab_size: int, audio: EncoderConfig, text: TextEncoderConfig, embed_dim: int) -> None:
        super().__init__()
        if embed_dim < 1:
            raise SpeechkitError(f"embed_dim must be >= 1, got {embed_dim}")
        self.audio_encoder = GlobalNormEncoder(audio)
        self.audio_proj = nn.Linear(audio.dim, embed_dim)
        self.text_encoder = TextEncoder(vocab_size, text)
        self.text_proj = nn.Linear(text.dim, embed_dim)

    def embed_audio(self, feats: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """``(B, T, F)`` features -> ``(B, E)``."""
        hidden, out_lens = self.audio_encoder(feats, lens)
        return self.audio_proj(masked_mean(hidden, out_lens))

    def embed_text(self, tokens: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """``(C, U)`` token ids -> ``(C, E)``."""
        return self.text_proj(self.text_encoder(tokens, lens))
