"""An audio captioner: the speech encoder (fbank -> Conformer) and a Transformer decoder over caption words.

The shape of CoNeTTE (*Killing two birds with one stone: Can an audio captioning system also be used for audio-text
retrieval?*, Labbé et al., DCASE 2023, section 2: an audio encoder, a projection, a Transformer decoder with
cross-attention trained with label smoothing, beam search at inference), with speechkit's
:class:`~speechkit.models.speech_encoder.SpeechEncoder` as the encoder instead of a pretrained ConvNeXt.

Dimension legend: ``B`` audios (or audio-caption pairs), ``T'`` encoder frames, ``U`` caption tokens, ``V`` words
(the specials included), ``D`` decoder width.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import torch
from torch import nn

from speechkit.errors import SpeechkitError
from speechkit.models.speech_encoder import EncoderConfig, SpeechEncoder, encoder_frames
from speechkit.tensors import lengths_to_mask
from speechkit.text.words import BOS, EOS, PAD, UNK


@dataclass(frozen=True)
class DecoderConfig:
    """Sizes of :class:`CaptionDecoder`.

    Args:
        dim: ``D``.
        num_layers: Transformer decoder layers.
        num_heads: attention heads (``dim`` must divide by it).
        ffn_dim: feed-forward width.
        dropout: dropout in the layers.
        max_tokens: longest token sequence (``<bos>`` and ``<eos>`` included): the positional table's size.
    """

    dim: int = 256
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1
    max_tokens: int = 40

    def __post_init__(self) -> None:
        if min(self.dim, self.num_layers, self.num_heads, self.ffn_dim, self.max_tokens) < 1:
            raise SpeechkitError(f"decoder sizes must be >= 1, got {self}")
        if self.dim % self.num_heads:
            raise SpeechkitError(f"decoder dim {self.dim} must be a multiple of num_heads {self.num_heads}")


def decoder_config(value: DecoderConfig | Mapping[str, Any]) -> DecoderConfig:
    """A ``DecoderConfig`` from itself or from its fields as a dict (a checkpoint's hyper-parameters)."""
    if isinstance(value, DecoderConfig):
        return value
    unknown = sorted(set(value) - {f.name for f in fields(DecoderConfig)})
    if unknown:
        raise SpeechkitError(f"decoder: unknown keys {unknown}; expected some of "
                             f"{[f.name for f in fields(DecoderConfig)]}")
    return DecoderConfig(**value)


class CaptionDecoder(nn.Module):
    """Token ids ``(B, U)`` and encoder states ``(B, T', D_enc)`` -> next-token logits ``(B, U, V)`` (causal)."""

    def __init__(self, vocab_size: int, memory_dim: int, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab_size, config.dim, padding_idx=PAD)
        self.position = nn.Embedding(config.max_tokens, config.dim)
        self.memory_proj = nn.Linear(memory_dim, config.dim)
        layer = nn.TransformerDecoderLayer(config.dim, config.num_heads, config.ffn_dim, config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, config.num_layers, norm=nn.LayerNorm(config.dim))
        self.output = nn.Linear(config.dim, vocab_size)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        """``memory_pad`` ``(B, T')`` is True on padded encoder frames. Rows may carry padding after ``<eos>``:
        causal attention never lets an earlier position see it."""
        length = tokens.shape[1]
        if length > self.config.max_tokens:
            raise SpeechkitError(f"caption of {length} tokens is longer than the decoder's max_tokens "
                                 f"{self.config.max_tokens}")
        x = self.embed(tokens) + self.position(torch.arange(length, device=tokens.device))  # (B, U, D)
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=tokens.device, dtype=x.dtype)
        hidden = self.layers(x, self.memory_proj(memory), tgt_mask=causal, tgt_is_causal=True,
                             memory_key_padding_mask=memory_pad)
        return self.output(hidden)


InputNorm = Literal["global", "utterance"]


class GlobalNormEncoder(SpeechEncoder):
    """``SpeechEncoder`` whose input is normalized per mel bin with statistics of the whole training data
    (``BatchNorm1d`` over the valid frames, running statistics at evaluation, as PANNs' CNNs normalize log-mels)
    instead of per utterance: a steady tone or noise and the level of a sound survive, which per-utterance mean and
    variance normalization removes (a constant tone becomes zeros)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__(config)
        self.input_norm = nn.BatchNorm1d(config.num_mel_bins)

    def subsample(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if feats.dim() != 3 or feats.shape[-1] != self.config.num_mel_bins:
            raise SpeechkitError(f"encoder input: expected (B, T, {self.config.num_mel_bins}) features, got "
                                 f"{tuple(feats.shape)}")
        valid = lengths_to_mask(lens, feats.shape[1])  # (B, T)
        x = torch.zeros_like(feats)
        x[valid] = self.input_norm(feats[valid])  # (N valid frames, F): padding never enters the statistics
        return self.project(self.subsampler(x, lens)), encoder_frames(lens)


class Captioner(nn.Module):
    """An encoder (:class:`GlobalNormEncoder`, or :class:`SpeechEncoder` with ``input_norm="utterance"``) +
    :class:`CaptionDecoder`."""

    def __init__(self, vocab_size: int, encoder: EncoderConfig, decoder: DecoderConfig,
                 input_norm: InputNorm = "global") -> None:
        super().__init__()
        if input_norm not in ("global", "utterance"):
            raise SpeechkitError(f"input_norm={input_norm!r}: expected 'global' or 'utterance'")
        self.encoder = GlobalNormEncoder(encoder) if input_norm == "global" else SpeechEncoder(encoder)
        self.decoder = CaptionDecoder(vocab_size, encoder.dim, decoder)

    def encode(self, feats: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states ``(B, T', D_enc)`` and their padding mask ``(B, T')`` (True = padding)."""
        memory, out_lens = self.encoder(feats, lens)
        return memory, ~lengths_to_mask(out_lens, memory.shape[1])

    def token_losses(self, memory: torch.Tensor, memory_pad: torch.Tensor, tokens: torch.Tensor,
                     token_lens: torch.Tensor, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced cross-entropy of every target token ``(B, U-1)`` and the target mask ``(B, U-1)``.

        ``tokens`` ``(B, U)`` are ``[<bos>, words..., <eos>]`` padded; the targets are ``tokens[:, 1:]`` within
        ``token_lens`` (the ``<eos>`` counts, as in the paper's loss).
        """
        logits = self.decoder(tokens[:, :-1], memory, memory_pad)  # (B, U-1, V)
        targets = tokens[:, 1:]
        mask = lengths_to_mask(token_lens - 1, targets.shape[1])
        losses = nn.functional.cross_entropy(logits.transpose(1, 2).float(), targets, reduction="none",
                                             label_smoothing=label_smoothing)
        return losses * mask, mask

    @torch.no_grad()
    def generate(self, feats: torch.Tensor, lens: torch.Tensor, beam_size: int, max_tokens: int,
                 min_tokens: int = 1) -> list[list[int]]:
        """Word ids of each audio by beam search (``beam_size`` 1 = greedy), without ``<bos>``/``<eos>``."""
        memory, memory_pad = self.encode(feats, lens)
        out = []
        for b in range(len(memory)):
            def next_log_probs(prefixes: torch.Tensor, b: int = b) -> torch.Tensor:
                k = len(prefixes)
                logits = self.decoder(prefixes, memory[b:b + 1].expand(k, -1, -1), memory_pad[b:b + 1].expand(k, -1))
                return logits[:, -1].float().log_softmax(-1)
            out.append(beam_search(next_log_probs, beam_size, max_tokens, min_tokens, device=memory.device))
        return out


def beam_search(
    next_log_probs: Callable[[torch.Tensor], torch.Tensor],
    beam_size: int,
    max_tokens: int,
    min_tokens: int = 1,
    banned: Sequence[int] = (PAD, BOS, UNK),
    device: Any = "cpu",
) -> list[int]:
    """The most probable caption (sum of token log-probabilities, no length normalisation) found by a beam.

    Args:
        next_log_probs: prefixes ``(K, t)`` (starting with ``<bos>``) -> log-probabilities ``(K, V)`` of the next token.
        beam_size: live hypotheses kept per step (1 = greedy).
        max_tokens: words at most; ``<eos>`` is forced after them.
        min_tokens: words at least before ``<eos>`` is allowed.
        banned: tokens never generated.

    Returns:
        The word ids, without ``<bos>`` and ``<eos>``.
    """
    if beam_size < 1 or max_tokens < 1 or not 0 <= min_tokens <= max_tokens:
        raise SpeechkitError(f"beam_size={beam_size}, max_tokens={max_tokens}, min_tokens={min_tokens}: expected "
                             "beam_size >= 1 and 0 <= min_tokens <= max_tokens >= 1")
    beams: list[tuple[list[int], float]] = [([BOS], 0.0)]
    finished: list[tuple[list[int], float]] = []
    for step in range(max_tokens + 1):
        log_probs = next_log_probs(torch.tensor([seq for seq, _ in beams], device=device)).cpu().clone()
        log_probs[:, list(banned)] = float("-inf")
        if step < min_tokens:
            log_probs[:, EOS] = float("-inf")
        if step == max_tokens:  # only <eos> is left
            keep = log_probs[:, EOS].clone()
            log_probs.fill_(float("-inf"))
            log_probs[:, EOS] = keep
        totals = torch.tensor([score for _, score in beams])[:, None] + log_probs  # (K, V)
        candidates = totals.flatten().topk(min(2 * beam_size, totals.numel()))
        live = []
        for value, index in zip(candidates.values.tolist(), candidates.indices.tolist()):
            if value == float("-inf"):
                break
            k, token = divmod(index, totals.shape[1])
            if token == EOS:
                finished.append((beams[k][0] + [token], value))
            elif len(live) < beam_size:
                live.append((beams[k][0] + [token], value))
        best_finished = max((score for _, score in finished), default=float("-inf"))
        if not live or best_finished >= max(score for _, score in live):  # scores only fall as tokens are added
            break
        beams = live
    best = max(finished, key=lambda item: item[1])[0]
    return best[1:-1]
