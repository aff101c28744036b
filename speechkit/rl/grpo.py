"""GRPO: group-relative advantages and the clipped policy loss with a k3 KL term and an entropy bonus.

*Reinforcement Learning for Reasoning in Large Language Models with One Training Example* (Wang et al. 2025),
section 2 (GRPO as run through verl): for each prompt, G responses are sampled and scored; every token of response
i gets the advantage ``A_i = (r_i - mean(r)) / (std(r) + eps)`` (std unbiased, as verl's ``compute_grpo_outcome_
advantage``), and

    L = -(1 / sum_i |o_i|) sum_i sum_t min(rho A, clip(rho, 1 - e, 1 + e) A)          (token mean)
        + beta * mean_t k3(pi_theta, pi_ref) - c_ent * mean_t H(pi_theta),

with ``rho = pi_theta / pi_old`` per token and ``k3 = exp(d) - d - 1``, ``d = log pi_ref - log pi_theta`` (verl's
``low_var_kl``, clamped as verl clamps it). The paper's defaults: clip 0.2, beta 0.001, entropy coefficient 0.001.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from speechkit.errors import SpeechkitError

KL_CLAMP = 20.0  # verl clamps log pi_ref - log pi_theta to +-20 and k3 to +-10 (numerical guard, not a hyperparameter)
K3_CLAMP = 10.0


def group_advantages(rewards: Tensor, eps: float = 1e-6) -> Tensor:
    """``(r - mean) / (std + eps)`` within each group: ``rewards`` (B prompts, G responses) -> (B, G).

    ``std`` is the unbiased standard deviation (divisor G - 1), so groups of one are refused: their spread is
    undefined. A group whose rewards are all equal gets advantages 0 (nothing to learn from it).
    """
    if rewards.dim() != 2:
        raise SpeechkitError(f"rewards: expected shape (prompts, group), got {tuple(rewards.shape)}")
    if rewards.shape[1] < 2:
        raise SpeechkitError(f"rewards: groups of {rewards.shape[1]} response; GRPO needs at least 2 per prompt "
                             "(the advantage is relative to the group)")
    if not bool(torch.isfinite(rewards).all()):
        raise SpeechkitError("rewards: contain NaN or inf")
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, unbiased=True, keepdim=True)
    return (rewards - mean) / (std + eps)


def k3_kl(log_probs: Tensor, ref_log_probs: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(pi_theta || pi_ref): ``exp(d) - d - 1``, ``d = log pi_ref - log pi_theta``.

    Non-negative, 0 exactly where the two log-probabilities agree; unbiased for the KL under samples of pi_theta.
    """
    delta = (ref_log_probs - log_probs).clamp(-KL_CLAMP, KL_CLAMP)
    return (delta.exp() - delta - 1).clamp(-K3_CLAMP, K3_CLAMP)


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy of the softmax over the last dimension: (..., V) -> (...)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def token_log_probs(logits: Tensor, tokens: Tensor) -> Tensor:
    """``log softmax(logits)[token]`` per position: logits (B, T, V), tokens (B, T) -> (B, T)."""
    if logits.shape[:-1] != tokens.shape:
        raise SpeechkitError(f"tokens: expected shape {tuple(logits.shape[:-1])}, got {tuple(tokens.shape)}")
    return F.log_softmax(logits.float(), dim=-1).gather(-1, tokens.clamp_min(0).unsqueeze(-1)).squeeze(-1)


@dataclass
class GRPOLoss:
    """The loss to minimise and its parts (token means over the batch's response tokens)."""

    loss: Tensor
    policy: Tensor
    kl: Tensor
    entropy: Tensor
    clip_fraction: Tensor


def _token_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum()


def grpo_loss(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor, mask: Tensor,
              ref_log_probs: Optional[Tensor] = None, entropy: Optional[Tensor] = None, clip: float = 0.2,
              kl_coef: float = 1e-3, entropy_coef: float = 1e-3) -> GRPOLoss:
    """The GRPO objective of the module docstring on a batch of N sampled responses of up to T tokens.

    Args:
        log_probs: (N, T) log pi_theta of each sampled token (with gradient).
        old_log_probs: (N, T) log pi_old of the same tokens, from the policy that sampled them (no gradient).
        advantages: (N,) one per response (``group_advantages(...).flatten()``) or (N, T) per token.
        mask: (N, T) 1 on response tokens, 0 on padding; at least one token.
        ref_log_probs: (N, T) log pi_ref, or None for no KL term.
        entropy: (N, T) the policy's entropy per position (``token_entropy(logits)``), or None for no bonus.
        clip: e of the clipped ratio, > 0.
        kl_coef, entropy_coef: beta and c_ent (>= 0).
    """
    if log_probs.dim() != 2:
        raise SpeechkitError(f"log_probs: expected shape (responses, tokens), got {tuple(log_probs.shape)}")
    shape = tuple(log_probs.shape)
    for name, value in (("old_log_probs", old_log_probs), ("mask", mask), ("ref_log_probs", ref_log_probs),
                        ("entropy", entropy)):
        if value is not None and tuple(value.shape) != shape:
            raise SpeechkitError(f"{name}: expected shape {shape} (as log_probs), got {tuple(value.shape)}")
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    if advantages.shape[0] != shape[0] or advantages.shape[1] not in (1, shape[1]):
        raise SpeechkitError(f"advantages: expected shape ({shape[0]},) or {shape}, got {tuple(advantages.shape)}")
    if clip <= 0 or kl_coef < 0 or entropy_coef < 0:
        raise SpeechkitError(f"clip must be > 0 and the coefficients >= 0, got clip={clip}, kl_coef={kl_coef}, "
                             f"entropy_coef={entropy_coef}")
    mask = mask.to(log_probs.dtype)
    if float(mask.sum()) == 0:
        raise SpeechkitError("mask: no response token in the batch")
    advantages = advantages.detach().to(log_probs.dtype)
    ratio = (log_probs - old_log_probs.detach()).exp()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - clip, 1 + clip) * advantages
    policy = -_token_mean(torch.minimum(unclipped, clipped), mask)
    clip_fraction = _token_mean((clipped < unclipped).to(log_probs.dtype), mask).detach()
    zero = log_probs.new_zeros(())
    kl = _token_mean(k3_kl(log_probs, ref_log_probs.detach()), mask) if ref_log_probs is not None else zero
    ent = _token_mean(entropy, mask) if entropy is not None else zero
    return GRPOLoss(policy + kl_coef * kl - entropy_coef * ent, policy, kl, ent, clip_fraction)
