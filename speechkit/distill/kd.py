"""Knowledge-distillation kernels over logits: temperature, forward / reverse KL, top-k, token masks.

Hinton et al. 2015 soft targets, in the form of the SquareHead code (Kurtic et al. 2023,
``train_sparse.py::KnowledgeDistillation``): ``T^2 * sum_tokens KL(softmax(z_t/T) || softmax(z_s/T)) / n_tokens``
over the tokens the mask keeps (``labels != -100``). Forward KL (teacher || student) is mode-covering, as in
Minitron's logit KD; reverse KL (student || teacher) is mode-seeking. ``top_k`` restricts both distributions to
the teacher's k most likely classes and renormalises (for the KL-Top calibration loss of OSTQuant see
``speechkit.losses.kl_top``, which this matches for the forward direction).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.tensors import IGNORE_INDEX

Direction = Literal["forward", "reverse"]
Reduction = Literal["mean", "sum", "none"]


def token_mask(labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Boolean mask of the tokens that count (``labels != ignore_index``), ``(B, T)``."""
    return labels != ignore_index


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 1.0,
    direction: Direction = "forward",
    mask: Tensor | None = None,
    top_k: int | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Temperature-scaled KL between teacher and student token distributions, times ``T^2``.

    Args:
        student_logits: ``(..., V)``.
        teacher_logits: ``(..., V)``; no gradient flows into it.
        temperature: softmax temperature ``T`` > 0.
        direction: "forward" ``KL(p_t || p_s)`` or "reverse" ``KL(p_s || p_t)``.
        mask: ``(...)`` bool, True for tokens that count (padding False).
        top_k: keep only the teacher's ``k`` largest classes per token, renormalised (None = all).
        reduction: "mean" over kept tokens, "sum" over kept tokens, or "none" (``(...)``, 0 at masked tokens).
    """
    if student_logits.shape != teacher_logits.shape:
        raise SpeechkitError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                             f"{tuple(teacher_logits.shape)} must have the same shape")
    if temperature <= 0:
        raise SpeechkitError(f"temperature must be > 0, got {temperature}")
    teacher_logits = teacher_logits.detach()
    if top_k is not None:
        if top_k < 1:
            raise SpeechkitError(f"top_k must be >= 1, got {top_k}")
        teacher_logits, index = teacher_logits.topk(min(top_k, teacher_logits.shape[-1]), dim=-1)  # (..., k)
        student_logits = student_logits.gather(-1, index)
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if direction == "forward":
        per_token = F.kl_div(log_s, log_t, reduction="none", log_target=True).sum(-1)
    elif direction == "reverse":
        per_token = F.kl_div(log_t, log_s, reduction="none", log_target=True).sum(-1)
    else:
        raise SpeechkitError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    per_token = per_token * temperature**2  # (...)
    return _reduce(per_token, mask, reduction)


def _reduce(per_token: Tensor, mask: Tensor | None, reduction: Reduction) -> Tensor:
    if mask is not None:
        if mask.shape != per_token.shape:
            raise SpeechkitError(f"mask must have shape {tuple(per_token.shape)}, got {tuple(mask.shape)}")
        per_token = torch.where(mask.bool(), per_token, torch.zeros_like(per_token))
    count = per_token.numel() if mask is None else int(mask.sum())
    if reduction == "none":
        return per_token
    if reduction == "sum":
        return per_token.sum()
    if reduction == "mean":
        return per_token.sum() / max(count, 1)
    raise SpeechkitError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


class KDLoss(nn.Module):
    """Module form of :func:`kd_loss` with fixed settings."""

    def __init__(self, temperature: float = 1.0, direction: Direction = "forward", top_k: int | None = None) -> None:
        super().__init__()
        if temperature <= 0:
            raise SpeechkitError(f"temperature must be > 0, got {temperature}")
        self.temperature, self.direction, self.top_k = temperature, direction, top_k

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None) -> Tensor:
        return kd_loss(student_logits, teacher_logits, self.temperature, self.direction, mask, self.top_k)
