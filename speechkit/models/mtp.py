"""Multi-token prediction with mask tokens, a sampler head and exact speculative decoding.

*Your LLM Knows the Future: Uncovering Its Multi-Token Prediction Potential* (Samragh et al. 2025):

* section 3.1: k mask tokens appended after a prefix ``x_1..x_t``; the last ordinary position predicts ``x_{t+1}``
  (next-token prediction, NTP) and mask i predicts ``x_{t+1+i}``;
* section 3.2: gated LoRA (:mod:`speechkit.models.gated_lora`) adapts only the mask positions, so NTP stays the
  base model's;
* section 3.3: a sampler head, a 2-layer MLP on ``[h_i ; e(y_{i-1})]`` (the mask's hidden state and the embedding of
  the previous token), turns the mask states into a coherent sequence of tokens;
* section 3.4: ``L = CE_MTP + CE_sampler + lambda * L_LCM``, the latent-consistency loss
  ``||h_mask_i - sg(h_j)||^2`` pulling mask i's state toward that of the ordinary position j that predicts the same
  token in the full sequence (the NTP cross-entropy is constant: the base is frozen);
* section 3.5: speculative decoding; the speculated tokens are verified by the model's own greedy predictions in
  the next forward pass and the longest agreeing prefix plus one corrected token is kept, so the output equals
  greedy decoding exactly.

Our choices where the paper is silent or costly: one mask block per training sequence at a random position (the
paper inserts blocks after many positions with a block attention mask); linear speculative decoding (masks after
the speculated tokens; after a rejection the next pass speculates afresh), without a KV cache, with mask and padding
ids never chosen. ``forward`` callables make a causal LM (:func:`causal_lm_forward`) and Whisper's decoder
(:func:`whisper_decoder_forward`) alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.models.gated_lora import lora_gate
from speechkit.tensors import IGNORE_INDEX

# forward(input_ids (B, T), attention_mask (B, T)) -> (logits (B, T, V), last hidden states (B, T, D))
Forward = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def causal_lm_forward(model: nn.Module) -> Forward:
    """The :data:`Forward` of a ``transformers`` causal LM."""
    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
        return out.logits, out.hidden_states[-1]
    return forward


def whisper_decoder_forward(model: nn.Module, encoder_hidden: torch.Tensor) -> Forward:
    """The :data:`Forward` of Whisper's decoder over fixed encoder states ``(B, S, D)`` (or ``(1, S, D)``)."""
    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = encoder_hidden.expand(input_ids.shape[0], -1, -1)
        out = model(encoder_outputs=(hidden,), decoder_input_ids=input_ids, output_hidden_states=True,
                    use_cache=False)
        return out.logits, out.decoder_hidden_states[-1]
    return forward


def add_mask_tokens(model: nn.Module, k: int) -> list[int]:
    """Grow the model's vocabulary by ``k`` mask tokens (rows initialised to the mean embedding) and return their
    ids. The embedding is trainable for those rows only (a gradient hook zeroes the others), so a frozen base
    model learns its mask embeddings: call it after :func:`~speechkit.models.gated_lora.apply_gated_lora`, which
    freezes the base."""
    if k < 1:
        raise SpeechkitError(f"k: expected >= 1 mask tokens, got {k}")
    embeddings = model.get_input_embeddings()
    vocab = embeddings.weight.shape[0]
    mean = embeddings.weight.detach().mean(dim=0)
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embeddings.weight
    model.resize_token_embeddings(vocab + k, mean_resizing=False)
    # a fresh Parameter: resizing swaps the tensor's data under autograd's accumulator of the old size
    weight = nn.Parameter(model.get_input_embeddings().weight.detach().clone())
    model.get_input_embeddings().weight = weight
    if tied:
        model.get_output_embeddings().weight = weight
    with torch.no_grad():
        weight[vocab:] = mean
    keep = torch.zeros(vocab + k, 1, dtype=weight.dtype)
    keep[vocab:] = 1
    weight.requires_grad_(True)
    weight.register_hook(lambda grad: grad * keep.to(grad.device))
    return list(range(vocab, vocab + k))


class SamplerHead(nn.Module):
    """``logits_i = W_out(MLP([h_i ; e(y_{i-1})]))``: the mask state and the previous token's embedding through two
    layers of width ``d_model``, projected by the model's own output layer (tied)."""

    def __init__(self, d_model: int, embeddings: nn.Embedding, output: nn.Module) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.embeddings, self.output = [embeddings], [output]  # the model's own, not parameters of the head

    def forward(self, hidden: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """hidden (..., D), previous token ids (...) -> logits (..., V)."""
        return self.output[0](hidden + self.mlp(torch.cat([hidden, self.embeddings[0](previous)], dim=-1)))


@dataclass
class MTPBatch:
    """Prefixes with k masks appended, and what each predicts."""

    input_ids: torch.Tensor  # (B, L) prefix + k masks, right-padded
    attention_mask: torch.Tensor  # (B, L)
    last: torch.Tensor  # (B,) index of each prefix's last ordinary token
    targets: torch.Tensor  # (B, k + 1): x_{t+1} (NTP) .. x_{t+1+k}, IGNORE_INDEX past the sequence's end
    full_ids: torch.Tensor  # (B, N) the whole sequences, right-padded
    full_mask: torch.Tensor  # (B, N)


def mtp_batch(sequences: Sequence[Sequence[int]], mask_ids: Sequence[int], pad_id: int,
              rng: random.Random) -> MTPBatch:
    """One mask block per sequence after a random prefix of at least one token."""
    k = len(mask_ids)
    rows, lasts, targets = [], [], []
    for sequence in sequences:
        if len(sequence) < 2:
            raise SpeechkitError(f"sequences: each needs at least 2 tokens (a prefix and a target), got {len(sequence)}")
        t = rng.randint(1, len(sequence) - 1)  # prefix x_1..x_t
        rows.append(list(sequence[:t]) + list(mask_ids))
        lasts.append(t - 1)
        future = list(sequence[t: t + k + 1])
        targets.append(future + [IGNORE_INDEX] * (k + 1 - len(future)))
    return MTPBatch(*_pad(rows, pad_id), torch.tensor(lasts), torch.tensor(targets),
                    *_pad([list(s) for s in sequences], pad_id))


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def mask_gate(input_ids: torch.Tensor, mask_ids: Sequence[int]) -> torch.Tensor:
    return torch.isin(input_ids, torch.tensor(list(mask_ids), device=input_ids.device))


@dataclass
class MTPLoss:
    loss: torch.Tensor
    mtp: torch.Tensor
    sampler: torch.Tensor
    lcm: torch.Tensor


def mtp_loss(forward: Forward, sampler: SamplerHead, batch: MTPBatch, mask_ids: Sequence[int],
             lcm_weight: float = 1.0) -> MTPLoss:
    """``CE_MTP + CE_sampler + lcm_weight * L_LCM`` of section 3.4 on one :class:`MTPBatch`."""
    k = len(mask_ids)
    with lora_gate(mask_gate(batch.input_ids, mask_ids)):
        logits, hidden = forward(batch.input_ids, batch.attention_mask)
    rows = torch.arange(len(batch.last))[:, None]
    positions = batch.last[:, None] + torch.arange(1, k + 1)[None, :]  # (B, k) the masks
    targets = batch.targets[:, 1:]  # x_{t+2} .. x_{t+1+k}
    mtp = F.cross_entropy(logits[rows, positions].flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    previous = batch.targets[:, :k].clamp_min(0)  # teacher forcing: x_{t+1} .. x_{t+k}
    sampled = sampler(hidden[rows, positions], previous)
    sampler_ce = F.cross_entropy(sampled.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    with torch.no_grad():  # the ordinary position that predicts the same token in the whole sequence
        _, full_hidden = forward(batch.full_ids, batch.full_mask)
        anchor = positions.clamp_max(batch.full_ids.shape[1] - 1)
        target_hidden = full_hidden[rows, anchor]
    valid = (targets != IGNORE_INDEX).float()[..., None]
    lcm = (((hidden[rows, positions] - target_hidden) ** 2) * valid).sum() / (valid.sum() * hidden.shape[-1]).clamp_min(1)
    return MTPLoss(mtp + sampler_ce + lcm_weight * lcm, mtp, sampler_ce, lcm)


def _greedy(logits: torch.Tensor, banned: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(banned, float("-inf")).argmax(dim=-1)


@torch.no_grad()
def greedy_generate(forward: Forward, prompt: Sequence[int], max_new_tokens: int, eos_id: Optional[int],
                    banned_ids: Sequence[int] = ()) -> list[int]:
    """Plain greedy decoding, one forward pass per token (the reference speculative decoding must equal)."""
    tokens = list(prompt)
    vocab_banned = None
    for _ in range(max_new_tokens):
        ids = torch.tensor([tokens])
        logits, _ = forward(ids, torch.ones_like(ids))
        if vocab_banned is None:
            vocab_banned = _banned(logits.shape[-1], banned_ids)
        token = int(_greedy(logits[0, -1], vocab_banned))
        tokens.append(token)
        if token == eos_id:
            break
    return tokens[len(prompt):]


def _banned(vocab: int, ids: Sequence[int]) -> torch.Tensor:
    banned = torch.zeros(vocab, dtype=torch.bool)
    banned[list(ids)] = True
    return banned


@dataclass
class SpeculativeResult:
    tokens: list[int]  # the generated tokens (the prompt excluded)
    forward_passes: int
    accepted: list[int]  # speculated tokens accepted at each verifying pass

    @property
    def tokens_per_pass(self) -> float:
        return len(self.tokens) / max(self.forward_passes, 1)


@torch.no_grad()
def speculative_generate(forward: Forward, sampler: Optional[SamplerHead], prompt: Sequence[int],
                         mask_ids: Sequence[int], max_new_tokens: int, eos_id: Optional[int],
                         banned_ids: Sequence[int] = ()) -> SpeculativeResult:
    """Greedy decoding that speculates ``len(mask_ids)`` tokens per pass and keeps the verified ones (section 3.5,
    linear): the output equals :func:`greedy_generate`'s. Without a sampler the mask positions' own argmax is used."""
    if not mask_ids:
        raise SpeechkitError("mask_ids: speculative decoding needs at least one mask token")
    tokens, pending, passes, accepted = list(prompt), [], 0, []
    banned: Optional[torch.Tensor] = None
    new = 0
    while new < max_new_tokens:
        ids = torch.tensor([tokens + pending + list(mask_ids)])
        with lora_gate(mask_gate(ids, mask_ids)):
            logits, hidden = forward(ids, torch.ones_like(ids))
        passes += 1
        if banned is None:
            banned = _banned(logits.shape[-1], list(banned_ids) + list(mask_ids))
        start = len(tokens) - 1  # the position that predicts the first pending token (or the next one)
        greedy = _greedy(logits[0, start: start + len(pending) + 1], banned).tolist()
        n = 0
        while n < len(pending) and pending[n] == greedy[n]:
            n += 1
        if pending:
            accepted.append(n)
        emitted = pending[:n] + [greedy[n]]
        for token in emitted:
            tokens.append(token)
            new += 1
            if token == eos_id or new >= max_new_tokens:
                return SpeculativeResult(tokens[len(prompt):], passes, accepted)
        # the masks followed exactly the accepted tokens only if nothing was rejected: then they speculate
        # the tokens after greedy[n]; otherwise the next pass starts afresh
        masks = slice(ids.shape[1] - len(mask_ids), ids.shape[1])
        pending = _speculate(logits[0, masks], hidden[0, masks], sampler, emitted[-1], banned) \
            if n == len(pending) else []
    return SpeculativeResult(tokens[len(prompt):], passes, accepted)


def _speculate(mask_logits: torch.Tensor, mask_hidden: torch.Tensor, sampler: Optional[SamplerHead],
               first: int, banned: torch.Tensor) -> list[int]:
    """The k tokens after ``first`` from the mask positions: the sampler chain, or each mask's argmax."""
    if sampler is None:
        return _greedy(mask_logits, banned).tolist()
    previous, out = first, []
    for state in mask_hidden:
        previous = int(_greedy(sampler(state, torch.tensor(previous)), banned))
        out.append(previous)
    return out
