"""KL-Top: KL divergence restricted to the teacher's top-K classes (OSTQuant, Hu et al., ICLR 2025).

``L = KL(P_t^(K) || P_s^(K))`` where both distributions are the softmax of the logits gathered at the K largest
teacher logits of each position (renormalised over those K), so that few calibration samples are not spent
fitting the long tail. The README names the loss (``--loss_type=kl_top``); the definition is our reading [M].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError


def kl_top(student_logits: Tensor, teacher_logits: Tensor, k: int, temperature: float = 1.0,
           mask: Tensor | None = None) -> Tensor:
    """Mean over positions of ``KL(softmax(t_K / T) || softmax(s_K / T))``.

    Args:
        student_logits: (..., V).
        teacher_logits: (..., V), not differentiated.
        k: number of teacher top classes (clipped to V).
        temperature: softmax temperature T (> 0).
        mask: (...) positions to include (default all).
    """
    if student_logits.shape != teacher_logits.shape:
        raise SpeechkitError(f"student_logits, teacher_logits: expected equal shapes, got "
                             f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if k < 1:
        raise SpeechkitError(f"k: expected >= 1, got {k}")
    if temperature <= 0:
        raise SpeechkitError(f"temperature: expected > 0, got {temperature}")
    teacher_logits = teacher_logits.detach()
    top_t, index = teacher_logits.topk(min(k, teacher_logits.shape[-1]), dim=-1)  # (..., K)
    log_p_t = F.log_softmax(top_t / temperature, dim=-1)
    log_p_s = F.log_softmax(student_logits.gather(-1, index) / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # (...)
    if mask is None:
        return kl.mean()
    if mask.shape != kl.shape:
        raise SpeechkitError(f"mask: expected shape {tuple(kl.shape)}, got {tuple(mask.shape)}")
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


class KLTop(nn.Module):
    """Module form of :func:`kl_top` with fixed ``k`` (default 1000 [D]) and temperature."""

    def __init__(self, k: int = 1000, temperature: float = 1.0) -> None:
        super().__init__()
        if k < 1:
            raise SpeechkitError(f"k: expected >= 1, got {k}")
        if temperature <= 0:
            raise SpeechkitError(f"temperature: expected > 0, got {temperature}")
        self.k, self.temperature = k, temperature

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None) -> Tensor:
        return kl_top(student_logits, teacher_logits, self.k, self.temperature, mask)
