"""The masked-prediction loss of masked speech modelling, with Ask2Mask's utterance weighting.

*Ask2Mask: Guided Data Selection for Masked Speech Modeling* (Baskar et al., IEEE J-STSP 2022, section 3.2;
``../shared/papers/speech.md`` section 3, [P] form): the loss of every masked frame of utterance ``b`` is scaled by
the scorer's utterance confidence ``u_b``,

    L = sum_b u_b * sum_{t in M_b} l_bt / sum_b |M_b|,

so with ``u_b = 1`` it is the plain mean over the masked frames of the batch (the wav2vec2 / w2v-BERT loss).
Dimension legend: ``B`` utterances, ``T`` encoder frames.
"""

from __future__ import annotations

from typing import Optional

import torch

from speechkit.errors import SpeechkitError


def masked_frame_loss(frame_losses: torch.Tensor, mask: torch.Tensor,
                      utterance_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``sum_b u_b sum_{t in M_b} l_bt / sum_b |M_b|`` (``u_b = 1`` when ``utterance_weights`` is ``None``).

    Args:
        frame_losses: ``(B, T)`` per-frame losses ``l_bt`` (any value at unmasked frames; they are not read).
        mask: ``(B, T)`` bool, True at masked frames ``M_b`` (padding must be False).
        utterance_weights: ``(B,)`` utterance confidences ``u_b`` (not differentiated), or ``None``.

    Returns:
        The scalar loss; ``0`` (still attached to the graph) when no frame of the batch is masked.
    """
    if frame_losses.shape != mask.shape or frame_losses.dim() != 2:
        raise SpeechkitError(f"frame_losses {tuple(frame_losses.shape)} and mask {tuple(mask.shape)}: expected the "
                             "same (B, T) shape")
    if mask.dtype != torch.bool:
        raise SpeechkitError(f"mask: expected a bool tensor, got {mask.dtype}")
    losses = torch.where(mask, frame_losses, torch.zeros_like(frame_losses)).sum(dim=1)  # (B,)
    if utterance_weights is not None:
        if utterance_weights.shape != (frame_losses.shape[0],):
            raise SpeechkitError(f"utterance_weights: expected shape ({frame_losses.shape[0]},), got "
                                 f"{tuple(utterance_weights.shape)}")
        losses = utterance_weights.detach().to(losses.dtype) * losses
    count = mask.sum()
    if int(count) == 0:
        return frame_losses.sum() * 0.0
    return losses.sum() / count
