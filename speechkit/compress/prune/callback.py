"""Lightning callback for gradual magnitude pruning and sparse fine-tuning with frozen masks (Kurtic et al. 2023).

Kept apart from ``masks.py`` so that the pruning functions import without Lightning.
"""

from __future__ import annotations

from typing import Any, Sequence

from lightning.pytorch import Callback
from torch import nn

from speechkit.compress.prune.masks import GradualSchedule, MaskManager, masks_from_zeros


class GradualPruning(Callback):
    """Lightning callback: prune by the schedule before a training batch, re-apply masks after the optimizer step.

    With ``schedule=None`` the masks are frozen from the current zeros (sparse fine-tuning after SparseGPT).
    """

    def __init__(self, targets: Sequence[str], schedule: GradualSchedule | None = None) -> None:
        self.targets = list(targets)
        self.schedule = schedule
        self.manager: MaskManager | None = None

    def on_fit_start(self, trainer: Any, pl_module: nn.Module) -> None:
        self.manager = MaskManager(pl_module, self.targets)
        if self.schedule is None:
            self.manager.set_masks(masks_from_zeros(pl_module, self.targets))

    def on_train_batch_start(self, trainer: Any, pl_module: nn.Module, batch: Any, batch_idx: int) -> None:
        if self.schedule is not None and self.manager is not None and self.schedule.should_prune(trainer.global_step):
            self.manager.prune(self.schedule.sparsity_at(trainer.global_step))

    def on_train_batch_end(self, trainer: Any, pl_module: nn.Module, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.manager is not None:
            self.manager.apply()
