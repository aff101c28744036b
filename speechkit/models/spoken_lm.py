"""A speech-in, speech-out language model: Whisper encoder -> adapter -> causal LM, with parallel text and mel streams.

*Continuous Speech Tokens Makes LLMs Robust Multi-Modality Learners* (Flow-Omni, Yuan et al. 2024), section 3:
the prompt's Whisper encoder states, downsampled by an adapter, are the LM's first input embeddings; at each answer
step ``k`` the LM's last hidden state ``h_k`` feeds the text head (next text token) and a speech head that predicts
the next ``r`` stacked mel frames ``x^1_k in R^{F r}`` (flow matching, ``speechkit.losses.flow_matching``, or, for
the discrete baseline, a softmax over k-means units of the same stacked frames); the frames are fed back through
``Linear(F r -> d_model)``. Where the paper is silent ([P]) we chose:

* adapter: ``k`` consecutive encoder states stacked, then ``Linear -> GELU -> Linear`` into ``d_model``;
* step input ``e_k = E_text(y_{k-1}) + W_in x_{k-1}`` (sum of the text and speech embeddings; ``y_{-1}`` = BOS,
  ``x_{-1} = 0``; after EOS the text input stays EOS, after the last chunk the speech input is 0);
* the streams have their own lengths: a step runs while either is unfinished, and a ``stop`` logit (``Linear(d,
  1)``, binary cross-entropy, the Tacotron-2 stop token) says when the speech has ended;
* the prompt is left-padded so every answer starts right after its prompt (positions count real inputs only).

Dimension legend: ``B`` examples, ``T`` prompt mel frames, ``P`` adapter frames, ``K`` answer steps, ``U`` answer
text tokens, ``M`` answer mel frames, ``F`` mel bins, ``r`` frames per step, ``d`` the LM's width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.tensors import lengths_to_mask

IGNORE = -100


def stack_chunks(mels: Tensor, lens: Tensor, r: int) -> tuple[Tensor, Tensor]:
    """``(B, M, F)`` mel frames -> ``(B, M / r, F r)`` chunks of ``r`` frames and ``(B,)`` chunks per example
    (``ceil(len / r)``; the frames after a length are the batch's padding)."""
    if r < 1:
        raise SpeechkitError(f"frames_per_step: expected >= 1, got {r}")
    if mels.dim() != 3 or lens.shape != (mels.shape[0],):
        raise SpeechkitError(f"answer mels: expected (B, M, F) with lengths (B,), got {tuple(mels.shape)} and "
                             f"{tuple(lens.shape)}")
    if mels.shape[1] % r:
        raise SpeechkitError(f"answer mels: {mels.shape[1]} frames is not a multiple of frames_per_step r={r}; pad "
                             f"the batch to a multiple of r (SpokenAnswerDataset does)")
    if int(lens.max()) > mels.shape[1]:
        raise SpeechkitError(f"answer mel lengths: {int(lens.max())} frames in a batch of {mels.shape[1]}")
    return mels.reshape(mels.shape[0], mels.shape[1] // r, -1), (lens + r - 1) // r


class Adapter(nn.Module):
    """Stacks ``k`` encoder states and projects them to the LM width: ``(B, S, D) -> (B, ceil(S / k), d)``."""

    def __init__(self, encoder_dim: int, lm_dim: int, k: int) -> None:
        super().__init__()
        if k < 1:
            raise SpeechkitError(f"adapter_stack: expected >= 1, got {k}")
        self.k = k
        self.net = nn.Sequential(nn.Linear(encoder_dim * k, lm_dim), nn.GELU(), nn.Linear(lm_dim, lm_dim))

    def forward(self, states: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        pad = -states.shape[1] % self.k
        states = F.pad(states * lengths_to_mask(lens, states.shape[1])[..., None].to(states.dtype), (0, 0, 0, pad))
        stacked = states.reshape(states.shape[0], states.shape[1] // self.k, -1)
        return self.net(stacked), (lens + self.k - 1) // self.k


@dataclass
class AnswerTargets:
    """Teacher-forced inputs and targets of the answer steps.

    Attributes:
        text_in: ``(B, K)`` text token fed at each step.
        speech_in: ``(B, K, F r)`` chunk fed at each step (0 at the first step and after the last chunk).
        text_target: ``(B, K)`` next token (``IGNORE`` after EOS).
        speech_target: ``(B, K, F r)`` next chunk; ``speech_mask (B, K)`` marks the steps that have one.
        stop_target: ``(B, K)`` 1.0 once the speech has ended; ``step_mask (B, K)`` marks real steps.
    """

    text_in: Tensor
    speech_in: Tensor
    text_target: Tensor
    speech_target: Tensor
    speech_mask: Tensor
    stop_target: Tensor
    step_mask: Tensor


def answer_targets(tokens: Tensor, token_lens: Tensor, chunks: Tensor, chunk_lens: Tensor, bos: int,
                   eos: int) -> AnswerTargets:
    """The answer steps of ``tokens (B, U)`` (without BOS/EOS) and ``chunks (B, S, F r)`` (see the module docstring):
    example ``b`` runs ``max(U_b + 1, S_b + 1)`` steps."""
    if tokens.shape[0] != chunks.shape[0] or token_lens.shape != chunk_lens.shape:
        raise SpeechkitError(f"answers: {tokens.shape[0]} token rows and {chunks.shape[0]} mel rows; expected the same "
                             "examples")
    batch, device = tokens.shape[0], tokens.device
    steps = torch.maximum(token_lens + 1, chunk_lens + 1)  # (B,)
    width = int(steps.max())
    k = torch.arange(width, device=device)[None]  # (1, K)
    text = torch.full((batch, width + 1), eos, dtype=torch.long, device=device)
    u = min(tokens.shape[1], width)
    text[:, :u] = torch.where(lengths_to_mask(token_lens, tokens.shape[1])[:, :u], tokens[:, :u], eos)
    text_in = torch.cat([torch.full((batch, 1), bos, dtype=torch.long, device=device), text[:, :width - 1]], 1)
    text_target = text[:, :width].masked_fill(k > token_lens[:, None], IGNORE)
    speech = F.pad(chunks, (0, 0, 0, max(width - chunks.shape[1], 0)))[:, :width]  # (B, K, F r)
    speech_mask = k < chunk_lens[:, None]
    speech = speech * speech_mask[..., None].to(speech.dtype)
    speech_in = F.pad(speech, (0, 0, 1, 0))[:, :width]
    step_mask = k < steps[:, None]
    return AnswerTargets(text_in, speech_in, text_target, speech, speech_mask,
                         (k >= chunk_lens[:, None]).to(chunks.dtype), step_mask)
