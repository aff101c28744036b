"""Multi-granularity semantic revision for distillation: sequence correction and re-generation (SCRG), the
distribution-adaptive clipping KL (DAC-KL) and the span correlation loss.

*Multi-Granularity Semantic Revision for Large Language Model Distillation* (Liu et al. 2024), section 3:
``L = L_SFT + L_DAC-KL + L_span`` on sequences the student generated and the teacher revised.

* SCRG (section 3.1): the student generates ``y``; at every position the teacher's prediction ``y^t_i`` and the
  token-wise divergence ``D_i = KL(p_t || p_s)`` are computed; the mismatched position with the largest ``D_i`` is
  replaced by the teacher's token and the student re-generates the rest. One correction per sequence by default
  (the paper tests 0 / 1 / 3 / 5); a sequence without mismatch is kept.
* DAC-KL (section 3.2): a small learnable network reads the teacher's distribution and predicts the bounds
  ``l < u`` of its high-density region; both distributions are restricted to it and renormalised before the KL.
  The paper does not give the network, the clipping or its training signal; ours: the teacher's top-``k``
  probabilities, sorted, through an MLP (k -> hidden -> 2) with ``l = sigmoid(a) - 1/2``, ``u = 1/2 + sigmoid(b)``;
  with the classes sorted by teacher probability, class v covers the cumulative mass ``[a_v, b_v]`` and is kept
  where that interval meets ``[l, u]``: ``m_v = sigmoid((b_v - l) / tau) * sigmoid((u - a_v) / tau)`` (the bounds
  reach past 0 and 1, so the whole distribution is a reachable region); the loss adds ``mass_weight * (1 - kept
  teacher mass)`` so that the region cannot shrink to nothing.
* Span loss (section 3.3): inside a span, the relation of adjacent positions ``c_i = p_i * p_{i+1}`` (element-wise)
  of teacher and student are matched; the distance is not given: mean squared error summed over the vocabulary.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError

# forward(input_ids (1, T), attention_mask (1, T)) -> (logits (1, T, V), hidden); generate(prefix, max_new) -> tokens
Forward = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
Generate = Callable[[list[int], int], list[int]]


# ------------------------------------------------------------------ SCRG
@torch.no_grad()
def scrg_revise(prompt: Sequence[int], response: Sequence[int], student: Forward, teacher: Forward,
                generate: Generate, max_new_tokens: int, eos_id: int | None = None,
                corrections: int = 1) -> list[int]:
    """Revise the student's ``response`` to ``prompt``: up to ``corrections`` times, replace the mismatched token
    where the teacher's distribution diverges most from the student's and let ``generate`` (the student's decoding)
    re-write the suffix. Returns the revised response."""
    if corrections < 0:
        raise SpeechkitError(f"corrections: expected >= 0, got {corrections}")
    response = list(response)
    for _ in range(corrections):
        if not response:
            break
        ids = torch.tensor([list(prompt) + response])
        mask = torch.ones_like(ids)
        start = len(prompt) - 1  # position predicting the response's first token
        log_t = F.log_softmax(teacher(ids, mask)[0][0, start: start + len(response)].float(), dim=-1)
        log_s = F.log_softmax(student(ids, mask)[0][0, start: start + len(response)].float(), dim=-1)
        divergence = (log_t.exp() * (log_t - log_s)).sum(dim=-1)  # (len,) KL(p_t || p_s)
        predicted = log_t.argmax(dim=-1)
        mismatch = predicted != torch.tensor(response)
        if not bool(mismatch.any()):
            break
        j = int(divergence.masked_fill(~mismatch, float("-inf")).argmax())
        response = response[:j] + [int(predicted[j])]
        if response[-1] != eos_id and len(response) < max_new_tokens:
            response += generate(list(prompt) + response, max_new_tokens - len(response))
    return response


# ------------------------------------------------------------------ DAC-KL
class DACKL(nn.Module):
    """Distribution-adaptive clipping KL over ``(..., V)`` logits, averaged over the positions ``mask`` keeps.

    Args:
        top_k: teacher probabilities the bound network reads (sorted, descending).
        hidden: the bound network's width.
        tau: softness of the clipping mask.
        mass_weight: weight of ``1 - kept teacher mass`` (keeps the region from collapsing).
        clip: False turns clipping off (mask 1 everywhere): the plain ``KL(p_t || p_s)``.
    """

    def __init__(self, top_k: int = 256, hidden: int = 64, tau: float = 0.02, mass_weight: float = 1.0,
                 clip: bool = True) -> None:
        super().__init__()
        if top_k < 1 or hidden < 1 or tau <= 0:
            raise SpeechkitError(f"top_k and hidden must be >= 1 and tau > 0, got {top_k}, {hidden}, {tau}")
        self.top_k, self.tau, self.mass_weight, self.clip = top_k, tau, mass_weight, clip
        self.bounds = nn.Sequential(nn.Linear(top_k, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def region(self, teacher_probs: Tensor) -> Tensor:
        """Soft mask ``(..., V)`` of the teacher's high-density region."""
        sorted_probs, order = teacher_probs.sort(dim=-1, descending=True)
        k = min(self.top_k, teacher_probs.shape[-1])
        features = F.pad(sorted_probs[..., :k], (0, self.top_k - k))
        raw = self.bounds(features)
        lower, upper = torch.sigmoid(raw[..., :1]) - 0.5, 0.5 + torch.sigmoid(raw[..., 1:])
        end = sorted_probs.cumsum(dim=-1)  # b_v of each class in sorted order
        start = end - sorted_probs  # a_v
        sorted_mask = torch.sigmoid((end - lower) / self.tau) * torch.sigmoid((upper - start) / self.tau)
        return torch.empty_like(sorted_mask).scatter_(-1, order, sorted_mask)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, mask: Tensor | None = None) -> Tensor:
        if student_logits.shape != teacher_logits.shape:
            raise SpeechkitError(f"student_logits {tuple(student_logits.shape)} and teacher_logits "
                                 f"{tuple(teacher_logits.shape)} must have the same shape")
        p_t = F.softmax(teacher_logits.detach().float(), dim=-1)
        log_s = F.log_softmax(student_logits.float(), dim=-1)
        if not self.clip:
            per_position = (p_t * (torch.log(p_t.clamp_min(1e-30)) - log_s)).sum(dim=-1)
            kept_mass = torch.ones_like(per_position)
        else:
            region = self.region(p_t)
            kept_t = p_t * region
            kept_mass = kept_t.sum(dim=-1)
            clipped_t = kept_t / kept_mass.clamp_min(1e-12)[..., None]
            clipped_log_s = log_s + torch.log(region.clamp_min(1e-30))
            clipped_log_s = clipped_log_s - torch.logsumexp(clipped_log_s, dim=-1, keepdim=True)
            per_position = (clipped_t * (torch.log(clipped_t.clamp_min(1e-30)) - clipped_log_s)).sum(dim=-1)
        per_position = per_position + self.mass_weight * (1 - kept_mass)
        if mask is None:
            return per_position.mean()
        mask = mask.to(per_position.dtype)
        return (per_position * mask).sum() / mask.sum().clamp_min(1)


# ------------------------------------------------------------------ span correlation
def span_correlation_loss(student_logits: Tensor, teacher_logits: Tensor, span_ids: Tensor) -> Tensor:
    """``sum_spans sum_i ||c^t_i - c^s_i||^2 / V`` with ``c_i = p_i * p_{i+1}`` for adjacent positions i, i + 1 of
    the same span; ``span_ids (B, T)`` numbers each position's span (negative: in none). Averaged over the pairs;
    0 when there is no pair (spans of length 1)."""
    if student_logits.shape != teacher_logits.shape or span_ids.shape != student_logits.shape[:-1]:
        raise SpeechkitError(f"shapes: logits {tuple(student_logits.shape)} / {tuple(teacher_logits.shape)} and "
                             f"span_ids {tuple(span_ids.shape)} must agree (span_ids without the vocabulary)")
    p_s = F.softmax(student_logits.float(), dim=-1)
    p_t = F.softmax(teacher_logits.detach().float(), dim=-1)
    pair = (span_ids[:, 1:] == span_ids[:, :-1]) & (span_ids[:, 1:] >= 0)  # (B, T - 1)
    if not bool(pair.any()):
        return student_logits.new_zeros(())
    c_s, c_t = p_s[:, :-1] * p_s[:, 1:], p_t[:, :-1] * p_t[:, 1:]
    distance = ((c_s - c_t) ** 2).mean(dim=-1)  # (B, T - 1)
    return distance[pair].mean()


def word_spans(pieces: Sequence[str], boundary: str = ".,;:!?") -> list[int]:
    """Span ids for token strings: a span ends after a token that ends in a punctuation mark of ``boundary`` (a
    sentence or clause chunker in the spirit of the paper's Punkt)."""
    span, out = 0, []
    for piece in pieces:
        out.append(span)
        if piece.strip() and piece.strip()[-1] in boundary:
            span += 1
    return out
