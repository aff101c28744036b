"""Reinforcement learning and preference optimisation for language models and Whisper's decoder: GRPO
(group advantages, clipped loss, k3 KL, entropy), DPO and SimPO, and the tree search that builds preference pairs."""

from speechkit.rl.grpo import GRPOLoss, group_advantages, grpo_loss, k3_kl, token_entropy, token_log_probs
from speechkit.rl.mcts import Node, PreferencePair, preference_pairs, search, select_hard, word_overlap
from speechkit.rl.preference import dpo_loss, simpo_loss

__all__ = [
    "GRPOLoss", "Node", "PreferencePair", "dpo_loss", "group_advantages", "grpo_loss", "k3_kl", "preference_pairs",
    "search", "select_hard", "simpo_loss", "token_entropy", "token_log_probs", "word_overlap",
]
