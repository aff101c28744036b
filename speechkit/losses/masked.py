"""The masked-prediction loss of masked speech modelling, with Ask2Mask's utterance weighting.

*Ask2Mask: Guided Data Selection for Masked Speech Modeling* (Baskar et al., IEEE J-STSP 2022, section 3.2;
``../shared/papers/speech.md`` section 3, [P] form): the loss of every masked frame of utterance ``b`` is scaled by
the scorer's utterance confidence ``u_b``,

    L = sum_b u_b * sum_{t in M_b} l_bt / sum_b |M_b|,

so with ``u_b = 1`` it is the plain mean over the masked frames of the batch (the wav2vec2 / w2v-BERT loss). The
per-frame loss ``l_bt`` is masked-prediction cross-entropy or wav2vec2's contrastive loss
(:func:`contrastive_frame_losses`).
Dimension legend: ``B`` utterances, ``T`` encoder frames.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn import functional as F

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


def contrastive_frame_losses(context: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                             num_distractors: int = 100, temperature: float = 0.1,
                             target_ids: Optional[torch.Tensor] = None,
                             generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """wav2vec 2.0's contrastive loss per masked frame (Baevski et al. 2020, section 3.2, eq. 3), ``(B, T)``.

    ``l_t = -log exp(sim(c_t, q_t) / k) / sum_{q in {q_t} + Q_t} exp(sim(c_t, q) / k)`` with cosine similarity
    ``sim``, temperature ``k`` and ``Q_t`` distractors drawn uniformly (with replacement) from the other masked
    frames of the same utterance. A distractor whose ``target_ids`` equals the positive's (the same quantized
    target) is left out, as wav2vec2 leaves out distractors identical to the positive. Unmasked frames, and masked
    frames of an utterance with a single masked frame, get 0.

    Args:
        context: ``(B, T, D)`` encoder outputs ``c_t`` (projected to the target space).
        targets: ``(B, T, D)`` targets ``q_t``.
        mask: ``(B, T)`` bool, masked frames.
        num_distractors: ``K`` (wav2vec2: 100).
        temperature: ``k`` (wav2vec2: 0.1).
        target_ids: ``(B, T)`` ids of the quantized targets, or ``None``.
        generator: the random generator of the distractor draws.
    """
    losses = torch.zeros(mask.shape, dtype=context.dtype, device=context.device)
    for row in range(mask.shape[0]):
        frames = torch.nonzero(mask[row]).flatten()
        count = frames.numel()
        if count < 2:
            continue
        draws = torch.randint(0, count - 1, (count, num_distractors), generator=generator).to(frames.device)
        draws = draws + (draws >= torch.arange(count, device=frames.device)[:, None]).long()  # never the frame itself
        c, q = context[row, frames], targets[row, frames]  # (n, D)
        candidates = torch.cat([q[:, None], q[draws]], dim=1)  # (n, 1 + K, D)
        logits = F.cosine_similarity(c[:, None], candidates, dim=-1) / temperature  # (n, 1 + K)
        if target_ids is not None:
            ids = target_ids[row, frames]
            same = ids[draws] == ids[:, None]  # (n, K)
            logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(same, float("-inf"))], dim=1)
        losses[row, frames] = -logits.log_softmax(-1)[:, 0]
    return losses
