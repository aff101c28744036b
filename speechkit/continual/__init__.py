"""Continual (class-incremental) learning over Lhotse CutSets: the task stream, the replay buffer, the metrics.

*Continual Contrastive Spoken Language Understanding* (COCONUT; Cappellazzo et al., ACL Findings 2024): intents (or
SLURP scenarios) arrive task after task in disjoint sets; a class-balanced buffer of past samples is replayed; the
model is scored by the accuracy matrix, average and last accuracy and forgetting.
"""

from speechkit.continual.buffer import ReplayBuffer, balanced_quotas, herding_order
from speechkit.continual.metrics import (
    average_accuracy,
    check_accuracy_matrix,
    forgetting,
    last_accuracy,
    plot_accuracy_over_time,
    seen_accuracy,
)
from speechkit.continual.scenario import ClassIncrementalScenario, cut_label

__all__ = [
    "ClassIncrementalScenario", "ReplayBuffer", "average_accuracy", "balanced_quotas", "check_accuracy_matrix",
    "cut_label", "forgetting", "herding_order", "last_accuracy", "plot_accuracy_over_time", "seen_accuracy",
]
