"""Span masks for masked speech modelling: random (wav2vec2) and scorer-guided (Ask2Mask).

*wav2vec 2.0* (Baevski et al., 2020, section 3.1/4.2): each frame is a span start with probability ``p`` (0.065)
and the ``L`` (10) frames from a start on are masked; overlapping spans merge, so the expected masked fraction is
``1 - (1 - p)^L`` (0.49). Here the number of starts is ``n = floor(p T + u)``, ``u ~ U(0, 1)`` (unbiased,
``E[n] = p T``; fairseq's ``compute_mask_indices`` rounds the same way), drawn without replacement among the ``T``
frames; spans extend to the right and are clipped at ``T``.

*Ask2Mask: Guided Data Selection for Masked Speech Modeling* (Baskar et al., IEEE J-STSP 2022, section 3.1;
``../shared/papers/speech.md`` section 3): masks fall only on frames the scorer is confident about. Starts are
drawn (still ``n`` of them, ``n`` from ``T``) only among frames whose confidence is at least the utterance's
``quantile`` of confidence (0.5, [P]); when fewer eligible frames exist than ``n``, all of them are starts. With a
constant confidence every frame is eligible and the draw is exactly the random one (same generator -> same mask).

Dimension legend: ``T`` frames of one utterance at the masked encoder's frame rate.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from speechkit.errors import SpeechkitError


def check_mask_options(num_frames: int, mask_prob: float, span: int) -> None:
    """Raise a one-line ``SpeechkitError`` for ``mask_prob`` outside (0, 1), ``span < 1`` or ``span > num_frames``."""
    if not 0.0 < mask_prob < 1.0 or math.isnan(mask_prob):
        raise SpeechkitError(f"mask_prob: expected a value in (0, 1), got {mask_prob}")
    if span < 1:
        raise SpeechkitError(f"span: expected >= 1 frame, got {span}")
    if span > num_frames:
        raise SpeechkitError(f"span: {span} frames is longer than the utterance ({num_frames} frames); use a "
                             "shorter span or leave out utterances that short")


def num_starts(num_frames: int, mask_prob: float, generator: Optional[torch.Generator] = None) -> int:
    """``floor(p T + u)``, ``u ~ U(0, 1)``: the number of span starts, ``p T`` on average."""
    u = float(torch.rand((), generator=generator))
    return int(math.floor(mask_prob * num_frames + u))


def spans_from_starts(starts: torch.Tensor, num_frames: int, span: int) -> torch.Tensor:
    """``(T,)`` mask of the spans ``[s, s + span)`` for each start ``s``, clipped at ``num_frames``."""
    mask = torch.zeros(num_frames + span, dtype=torch.bool)
    for offset in range(span):
        mask[starts + offset] = True
    return mask[:num_frames]


def draw_starts(candidates: torch.Tensor, num_frames: int, mask_prob: float,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``min(n, len(candidates))`` span starts among ``candidates`` (frame indices), without replacement."""
    count = min(num_starts(num_frames, mask_prob, generator), candidates.numel())
    order = torch.randperm(candidates.numel(), generator=generator)
    return candidates[order[:count]]


def random_span_mask(num_frames: int, mask_prob: float, span: int,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """wav2vec2 span masking: ``(T,)`` bool, True where a frame is masked.

    Args:
        num_frames: ``T``, frames of the utterance.
        mask_prob: ``p``, probability of a frame being a span start (wav2vec2: 0.065).
        span: ``L``, frames masked from each start on (wav2vec2: 10); at most ``T``.
        generator: the random generator (same generator state -> same mask).
    """
    check_mask_options(num_frames, mask_prob, span)
    return spans_from_starts(draw_starts(torch.arange(num_frames), num_frames, mask_prob, generator), num_frames, span)


def eligible_starts(confidence: torch.Tensor, quantile: float = 0.5) -> torch.Tensor:
    """Indices of the frames whose confidence is at least the utterance's ``quantile`` of confidence."""
    threshold = torch.quantile(confidence.double(), quantile)
    return torch.nonzero(confidence.double() >= threshold).flatten()


def check_confidence(confidence: Optional[torch.Tensor], quantile: float) -> torch.Tensor:
    """The confidences as a 1-D float tensor; missing, empty, non-finite or out-of-[0, 1] values are errors."""
    if confidence is None:
        raise SpeechkitError("confidence: missing; Ask2Mask needs the scorer's per-frame confidences "
                             "(speechkit scorer-confidences MODEL CUTS OUT)")
    confidence = torch.as_tensor(confidence)
    if confidence.dim() != 1 or confidence.numel() == 0:
        raise SpeechkitError(f"confidence: expected a non-empty (T,) tensor, got shape {tuple(confidence.shape)}")
    if not bool(torch.isfinite(confidence).all()) or float(confidence.min()) < 0 or float(confidence.max()) > 1:
        raise SpeechkitError("confidence: expected finite posteriors in [0, 1], got values from "
                             f"{float(confidence.min())} to {float(confidence.max())}")
    if not 0.0 <= quantile <= 1.0:
        raise SpeechkitError(f"quantile: expected a value in [0, 1], got {quantile}")
    return confidence


def ask2mask_span_mask(confidence: Optional[torch.Tensor], mask_prob: float, span: int, quantile: float = 0.5,
                       generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Ask2Mask span masking: ``(T,)`` bool; span starts only on confident frames (see the module docstring).

    Args:
        confidence: ``(T,)`` the scorer's per-frame confidence (max posterior) at the encoder's frame rate.
        mask_prob: ``p``, as in :func:`random_span_mask`; the number of starts is drawn from ``T``, not from the
            number of eligible frames.
        span: ``L`` frames per span, at most ``T``.
        quantile: frames with confidence at least this quantile of the utterance's confidences are eligible starts
            ([P] 0.5: the more confident half).
        generator: the random generator.
    """
    confidence = check_confidence(confidence, quantile)
    check_mask_options(confidence.numel(), mask_prob, span)
    starts = draw_starts(eligible_starts(confidence, quantile), confidence.numel(), mask_prob, generator)
    return spans_from_starts(starts, confidence.numel(), span)
