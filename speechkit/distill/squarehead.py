"""SquareHead: normalized per-layer feature distillation (Kurtic et al. 2023, "Sparse Fine-tuning for Inference
Acceleration of Large Language Models", official ``train_sparse.py``).

``SQ = sum_l mean((h_s^l - h_t^l)^2 [tok]) / (mean((h_t^l)^2 [tok]) + eps)`` with ``eps = finfo(bf16).eps``; one
term per transformer block output (``hidden_states[0]``, the embedding output, skipped); ``tok`` the non-padding
positions. Each term is ``MSE(f_t, f_s) / MSE(f_t, 0)``, so it is invariant to scaling teacher and student
together, and about 1 for a student that outputs 0.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError

BF16_EPS = torch.finfo(torch.bfloat16).eps


def squarehead_terms(
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    mask: Tensor | None = None,
    eps: float = BF16_EPS,
    skip_embedding: bool = True,
) -> Tensor:
    """Per-layer SquareHead terms, ``(L,)``.

    Args:
        student_hidden: hidden states ``(B, T, D)`` per layer (HF ``hidden_states``: embedding output first).
        teacher_hidden: the teacher's, same count and shapes.
        mask: ``(B, T)``, True at real tokens; padded positions never count.
        eps: added to the denominator.
        skip_embedding: drop entry 0 (the embedding output) of both lists.
    """
    if len(student_hidden) != len(teacher_hidden):
        raise SpeechkitError(f"student_hidden has {len(student_hidden)} layers, teacher_hidden {len(teacher_hidden)}")
    pairs = list(zip(student_hidden, teacher_hidden))[1 if skip_embedding else 0 :]
    if not pairs:
        raise SpeechkitError("student_hidden must hold at least one layer after the embedding output")
    terms = []
    for hs, ht in pairs:
        if hs.shape != ht.shape:
            raise SpeechkitError(f"student and teacher hidden states differ in shape: "
                                 f"{tuple(hs.shape)} vs {tuple(ht.shape)}")
        ht = ht.detach().float()
        diff, ref = (hs.float() - ht) ** 2, ht**2
        if mask is not None:
            if mask.shape != hs.shape[:-1]:
                raise SpeechkitError(f"mask must have shape {tuple(hs.shape[:-1])}, got {tuple(mask.shape)}")
            diff, ref = diff[mask.bool()], ref[mask.bool()]  # (N, D) kept tokens
        terms.append(diff.mean() / (ref.mean() + eps))
    return torch.stack(terms)


def squarehead_loss(
    student_hidden: Sequence[Tensor],
    teacher_hidden: Sequence[Tensor],
    mask: Tensor | None = None,
    eps: float = BF16_EPS,
    skip_embedding: bool = True,
) -> Tensor:
    """Sum over layers of :func:`squarehead_terms` (the SquareHead loss)."""
    return squarehead_terms(student_hidden, teacher_hidden, mask, eps, skip_embedding).sum()


class SquareHeadLoss(nn.Module):
    """Module form of :func:`squarehead_loss`."""

    def __init__(self, eps: float = BF16_EPS, skip_embedding: bool = True) -> None:
        super().__init__()
        self.eps, self.skip_embedding = eps, skip_embedding

    def forward(self, student_hidden: Sequence[Tensor], teacher_hidden: Sequence[Tensor],
                mask: Tensor | None = None) -> Tensor:
        return squarehead_loss(student_hidden, teacher_hidden, mask, self.eps, self.skip_embedding)
