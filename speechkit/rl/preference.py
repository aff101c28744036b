"""Preference losses on (chosen, rejected) response pairs: DPO and SimPO.

* DPO: *Direct Preference Optimization* (Rafailov et al. 2023), eq. 7:
  ``-log sigmoid(beta * ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))))``.
* SimPO: *SimPO: Simple Preference Optimization with a Reference-Free Reward* (Meng et al. 2024), eq. 6:
  ``-log sigmoid(beta / |y_w| log pi(y_w) - beta / |y_l| log pi(y_l) - gamma)``.

*Boosting Tool Use of Large Language Models via Iterative Reinforced Fine-Tuning* (iTool, Zeng et al. 2025)
optimises its tree-search pairs with SimPO (beta 2.5, gamma 0.5) by default and DPO as the alternative.
"""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from speechkit.errors import SpeechkitError


def _same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(value.shape) for name, value in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise SpeechkitError(f"preference loss inputs must have one shape (one value per pair), got {shapes}")


def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, reference_chosen_logps: Tensor,
             reference_rejected_logps: Tensor, beta: float = 0.1) -> Tensor:
    """DPO per pair (B,): sequence log-probabilities (summed over each response's tokens) in, losses out.

    At ``policy == reference`` every pair's loss is ``log 2``.
    """
    _same_shape(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                reference_chosen_logps=reference_chosen_logps, reference_rejected_logps=reference_rejected_logps)
    if beta <= 0:
        raise SpeechkitError(f"beta: expected > 0, got {beta}")
    margin = (policy_chosen_logps - reference_chosen_logps.detach()) - (
        policy_rejected_logps - reference_rejected_logps.detach())
    return -F.logsigmoid(beta * margin)


def simpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, chosen_lengths: Tensor,
               rejected_lengths: Tensor, beta: float = 2.5, gamma: float = 0.5) -> Tensor:
    """SimPO per pair (B,): summed log-probabilities and token counts of each response; no reference model."""
    _same_shape(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths)
    if beta <= 0:
        raise SpeechkitError(f"beta: expected > 0, got {beta}")
    if bool((chosen_lengths <= 0).any()) or bool((rejected_lengths <= 0).any()):
        raise SpeechkitError("chosen_lengths / rejected_lengths: every response needs at least one token")
    reward_chosen = beta * policy_chosen_logps / chosen_lengths
    reward_rejected = beta * policy_rejected_logps / rejected_lengths
    return -F.logsigmoid(reward_chosen - reward_rejected - gamma)
