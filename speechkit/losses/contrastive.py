"""Supervised contrastive losses of *Continual Contrastive Spoken Language Understanding* (COCONUT; Cappellazzo et
al., ACL Findings 2024; arXiv 2310.02699): the supervised contrastive base, NSPT and the multimodal audio-text loss.

Every feature is L2-normalised inside, so each loss is invariant to the scale of its inputs. Dimension legend:
``N`` samples, ``D`` feature size; ``t`` is the temperature.

* supervised contrastive (Khosla et al. 2020, *Supervised Contrastive Learning*, eq. 2, "L_out"), over anchors
  ``i`` with at least one positive ``P(i) = {p != i: y_p = y_i}``:
  ``-1/|P(i)| sum_p log(exp(z_i.z_p/t) / sum_{a != i} exp(z_i.z_a/t))``, averaged over those anchors;
* NSPT (negative-student, positive-teacher; COCONUT's loss on rehearsal samples): anchor the student feature
  ``z^S_i``; positives the teacher features ``z^T_p`` of every sample with label ``y_i`` (its own included);
  denominator over those positives and the student features ``z^S_a`` of the other-class samples; the teacher
  gets no gradient;
* MM (COCONUT's multimodal loss on the current task's data): the symmetric supervised audio-to-text /
  text-to-audio loss; the positives of an audio anchor are the text features of every sample with its label
  (its own included), and vice versa.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from speechkit.errors import SpeechkitError


def _check(name: str, features: Tensor, labels: Tensor, temperature: float) -> None:
    if features.dim() != 2:
        raise SpeechkitError(f"{name}: features must be (N, D), got shape {tuple(features.shape)}")
    if labels.dim() != 1 or labels.shape[0] != features.shape[0]:
        raise SpeechkitError(f"{name}: labels must be (N,) = ({features.shape[0]},), got {tuple(labels.shape)}")
    if temperature <= 0:
        raise SpeechkitError(f"{name}: temperature must be > 0, got {temperature}")


def _check_pair(name: str, first: Tensor, second: Tensor) -> None:
    if first.shape != second.shape:
        raise SpeechkitError(f"{name}: the two feature sets must have the same shape (N, D), got "
                             f"{tuple(first.shape)} and {tuple(second.shape)}")


def _positive_mean_log_prob(logits: Tensor, positives: Tensor, candidates: Tensor) -> Tensor:
    """``(N,)``: ``1/|P(i)| sum_{p in P(i)} log(exp(l_ip) / sum_{a in A(i)} exp(l_ia))``.

    Args:
        logits: ``(N, M)`` similarities over temperature.
        positives: ``(N, M)`` bool, ``P(i)`` (a subset of ``candidates``; every row non-empty).
        candidates: ``(N, M)`` bool, ``A(i)``: the denominator's terms.
    """
    log_denominator = logits.masked_fill(~candidates, float("-inf")).logsumexp(dim=1, keepdim=True)  # (N, 1)
    log_prob = (logits - log_denominator).masked_fill(~positives, 0.0)
    return log_prob.sum(1) / positives.sum(1)


def supervised_contrastive_loss(features: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Khosla et al. 2020 eq. 2 over ``features`` ``(N, D)`` with ``labels`` ``(N,)``; mean over the anchors that
    have a positive (0 with a gradient of 0 when none has)."""
    _check("supervised_contrastive_loss", features, labels, temperature)
    z = F.normalize(features.float(), dim=1)
    logits = z @ z.T / temperature  # (N, N)
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    positives = (labels[:, None] == labels[None, :]) & ~eye
    anchors = positives.any(1)
    if not anchors.any():
        return features.sum() * 0.0
    loss = -_positive_mean_log_prob(logits[anchors], positives[anchors], ~eye[anchors])
    return loss.mean()


def nspt_loss(student: Tensor, teacher: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Negative-student positive-teacher loss (COCONUT) of ``student`` and ``teacher`` ``(N, D)``
    features of the same rehearsal samples; mean over all anchors. The teacher side is detached."""
    _check("nspt_loss", student, labels, temperature)
    _check_pair("nspt_loss", student, teacher)
    z_s = F.normalize(student.float(), dim=1)
    z_t = F.normalize(teacher.detach().float(), dim=1)
    same = labels[:, None] == labels[None, :]  # (N, N)
    logits = torch.cat([z_s @ z_t.T, z_s @ z_s.T], dim=1) / temperature  # (N, 2N): teacher columns, then student
    positives = torch.cat([same, torch.zeros_like(same)], dim=1)
    candidates = torch.cat([same, ~same], dim=1)
    return -_positive_mean_log_prob(logits, positives, candidates).mean()


def multimodal_contrastive_loss(audio: Tensor, text: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric supervised audio-text loss (COCONUT's MM): ``(L(audio -> text) + L(text -> audio)) / 2``,
    each the mean over anchors of ``-1/|P(i)| sum_p log softmax_j(z_i.w_j / t)[p]`` with ``P(i)`` the other
    modality's features of the samples labelled ``y_i``. Both sides get gradients."""
    _check("multimodal_contrastive_loss", audio, labels, temperature)
    _check_pair("multimodal_contrastive_loss", audio, text)
    z_a = F.normalize(audio.float(), dim=1)
    z_t = F.normalize(text.float(), dim=1)
    same = labels[:, None] == labels[None, :]  # (N, N), symmetric
    everything = torch.ones_like(same)
    logits = z_a @ z_t.T / temperature  # (N audio, N text)
    audio_to_text = -_positive_mean_log_prob(logits, same, everything).mean()
    text_to_audio = -_positive_mean_log_prob(logits.T, same, everything).mean()
    return (audio_to_text + text_to_audio) / 2
