"""Transformer text encoder and decoder for translation, with batched beam search.

Vaswani et al., *Attention Is All You Need* (NeurIPS 2017), sections 3.1-3.5 (pre-norm blocks as in fairseq's
S2T/MT models: Wang et al., *fairseq S2T*, 2020): scaled token embeddings plus sinusoidal positions. The text
encoder reads source units (characters, as ``speechkit.text.characters``); the decoder predicts target subwords
(``speechkit.text.subwords``: pad 0, BOS 2, EOS 3) attending to any encoder's ``(B, S, D)`` output, a text
encoder's or ``speechkit.models.speech_encoder.SpeechEncoder``'s.

Dimension legend: ``B`` sentences, ``S`` source positions, ``U`` target tokens, ``D`` width, ``V`` vocabulary,
``K`` beams.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechkit.errors import SpeechkitError, dataclass_fields_from
from speechkit.tensors import lengths_to_mask


@dataclass(frozen=True)
class TransformerConfig:
    """Sizes of :class:`TextEncoder` or :class:`TranslationDecoder` (``dim`` must equal the encoder's output width).

    Args:
        dim: ``D``.
        num_layers: blocks.
        num_heads: attention heads (``dim`` must divide by it).
        ffn_dim: feed-forward width.
        dropout: dropout of attention, feed-forward and embeddings.
        max_len: longest sequence the sinusoidal table covers.
    """

    dim: int = 144
    num_layers: int = 3
    num_heads: int = 4
    ffn_dim: int = 576
    dropout: float = 0.1
    max_len: int = 1024

    def __post_init__(self) -> None:
        if min(self.dim, self.num_layers, self.num_heads, self.ffn_dim, self.max_len) < 1:
            raise SpeechkitError(f"transformer sizes must be >= 1, got {self}")
        if self.dim % self.num_heads:
            raise SpeechkitError(f"transformer dim {self.dim} must be a multiple of num_heads {self.num_heads}")


def transformer_config(value: TransformerConfig | Mapping[str, Any]) -> TransformerConfig:
    """A ``TransformerConfig`` from itself or its fields as a dict (a checkpoint's hyper-parameters)."""
    if isinstance(value, TransformerConfig):
        return value
    return TransformerConfig(**dataclass_fields_from(value, TransformerConfig, "transformer config"))


def sinusoids(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` sinusoidal positions (sin on even, cos on odd channels), section 3.5."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return table


class _Embedding(nn.Module):
    """ids ``(B, L)`` -> ``sqrt(D) * E[ids] + position`` ``(B, L, D)``, dropout."""

    def __init__(self, vocab_size: int, config: TransformerConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, config.dim, padding_idx=0)
        nn.init.normal_(self.tokens.weight, std=config.dim ** -0.5)
        self.register_buffer("positions", sinusoids(config.max_len, config.dim), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.scale = math.sqrt(config.dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[1] > self.positions.shape[0]:
            raise SpeechkitError(f"sequence of {ids.shape[1]} tokens is longer than max_len {self.positions.shape[0]}")
        return self.dropout(self.tokens(ids) * self.scale + self.positions[: ids.shape[1]])


class TextEncoder(nn.Module):
    """Source ids ``(B, S)`` (0 = padding) -> hidden states ``(B, S, D)`` and lengths ``(B,)``."""

    def __init__(self, vocab_size: int, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = _Embedding(vocab_size, config)
        layer = nn.TransformerEncoderLayer(config.dim, config.num_heads, config.ffn_dim, config.dropout,
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, ids: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padding = ~lengths_to_mask(lens, ids.shape[1])
        hidden = self.layers(self.embed(ids), src_key_padding_mask=padding)
        return self.norm(hidden) * (~padding)[..., None], lens


class TranslationDecoder(nn.Module):
    """Target prefix ``(B, U)`` + encoder output ``(B, S, D)`` -> next-token logits ``(B, U, V)`` (tied output)."""

    def __init__(self, vocab_size: int, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = _Embedding(vocab_size, config)
        layer = nn.TransformerDecoderLayer(config.dim, config.num_heads, config.ffn_dim, config.dropout,
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, config.num_layers)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, prefix: torch.Tensor, memory: torch.Tensor, memory_lens: torch.Tensor) -> torch.Tensor:
        if memory.shape[-1] != self.config.dim:
            raise SpeechkitError(f"decoder: encoder output width {memory.shape[-1]} != decoder dim {self.config.dim}")
        causal = nn.Transformer.generate_square_subsequent_mask(prefix.shape[1], device=prefix.device, dtype=torch.bool)
        hidden = self.layers(
            self.embed(prefix), memory, tgt_mask=causal, tgt_is_causal=True,
            tgt_key_padding_mask=prefix == 0, memory_key_padding_mask=~lengths_to_mask(memory_lens, memory.shape[1]),
        )
        return self.norm(hidden) @ self.embed.tokens.weight.T


@torch.no_grad()
def beam_search(decoder: TranslationDecoder, memory: torch.Tensor, memory_lens: torch.Tensor, bos: int, eos: int,
                beam_size: int = 5, max_len: int = 100, length_penalty: float = 1.0) -> list[list[int]]:
    """Best target ids (BOS / EOS removed; at most ``max_len - 1`` tokens, then EOS) of each sentence by beam search; scores ``log p / len^length_penalty``
    over finished hypotheses (``beam_size = 1`` is greedy decoding). A sentence stops when its best finished
    hypothesis scores above every live beam at the current length (the usual early-stopping heuristic)."""
    batch, k = memory.shape[0], beam_size
    memory = memory.repeat_interleave(k, 0)  # (B K, S, D)
    memory_lens = memory_lens.repeat_interleave(k, 0)
    prefix = torch.full((batch * k, 1), bos, dtype=torch.long, device=memory.device)
    scores = torch.full((batch, k), -math.inf, device=memory.device)
    scores[:, 0] = 0.0  # one live beam at the start
    best: list[tuple[float, list[int]]] = [(-math.inf, []) for _ in range(batch)]
    for step in range(max_len):
        log_probs = decoder(prefix, memory, memory_lens)[:, -1].float().log_softmax(-1)  # (B K, V)
        log_probs[:, [0, bos]] = -math.inf  # never padding or a second BOS
        if step == max_len - 1:
            log_probs[:, torch.arange(log_probs.shape[-1], device=log_probs.device) != eos] = -math.inf  # must end
        vocab = log_probs.shape[-1]
        total = (scores.reshape(-1, 1) + log_probs).reshape(batch, k * vocab)
        top, index = total.topk(min(2 * k, k * vocab), dim=1)  # (B, 2K): room to replace finished beams
        live_scores, live_rows = torch.full_like(scores, -math.inf), torch.zeros(batch, k, dtype=torch.long)
        live_tokens = torch.zeros(batch, k, dtype=torch.long)
        for b in range(batch):
            kept = 0
            for score, flat in zip(top[b].tolist(), index[b].tolist()):
                beam, token = divmod(flat, vocab)
                if score == -math.inf:
                    break
                if token == eos:
                    normalized = score / (step + 1) ** length_penalty
                    if normalized > best[b][0]:
                        best[b] = (normalized, prefix[b * k + beam, 1:].tolist())
                    continue
                live_scores[b, kept], live_rows[b, kept], live_tokens[b, kept] = score, b * k + beam, token
                kept += 1
                if kept == k:
                    break
        alive = (live_scores.max(1).values / (step + 1) ** length_penalty).tolist()
        if all(best[b][0] >= alive[b] for b in range(batch)):  # no live beam scores above a finished one now
            break
        scores = live_scores
        prefix = torch.cat([prefix[live_rows.flatten()], live_tokens.reshape(-1, 1).to(prefix.device)], dim=1)
    return [ids for _, ids in best]
