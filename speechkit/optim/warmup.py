"""AdamW with linear warm-up then linear decay to zero: the default optimisation of the Whisper tasks.

Whisper's own training schedule (Radford et al. 2022, "Robust Speech Recognition via Large-Scale Weak Supervision",
section 2.4: AdamW, linear learning-rate decay to zero after a warm-up); any other Lightning
``LRSchedulerCallable`` (e.g. :class:`speechkit.optim.WarmupStableDecay`) may replace it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

import torch
from torch.optim import Optimizer
from lightning.pytorch.cli import LRSchedulerCallable

DEFAULT_TOTAL_STEPS = 10_000  # the decay length when the trainer sets no max_steps


def linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1 over ``warmup_steps``, then linear decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def adamw_warmup_decay(
    parameters: Iterable[torch.nn.Parameter],
    max_steps: int,
    lr: float,
    weight_decay: float = 0.0,
    warmup_steps: int = 50,
    scheduler: Optional[LRSchedulerCallable] = None,
) -> dict[str, Any]:
    """``configure_optimizers``' answer: AdamW over the trainable ``parameters`` and a per-step schedule.

    Args:
        parameters: the model's parameters (those with ``requires_grad=False`` are left out).
        max_steps: the trainer's ``max_steps`` (``<= 0``: decay over :data:`DEFAULT_TOTAL_STEPS`).
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps (at least 1).
        scheduler: another schedule, built on the optimizer, replacing warm-up + linear decay.

    Returns:
        ``{"optimizer": AdamW, "lr_scheduler": {"scheduler": ..., "interval": "step"}}``.
    """
    optimizer = torch.optim.AdamW([p for p in parameters if p.requires_grad], lr=lr, weight_decay=weight_decay)
    if scheduler is not None:
        schedule = scheduler(optimizer)
    else:
        total, warmup = max_steps if max_steps > 0 else DEFAULT_TOTAL_STEPS, max(1, warmup_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: linear_warmup_decay(step, warmup, total))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def configure_optimizers(parameters: Any, optimizer_factory: Callable[[Any], Optimizer],
                         scheduler_factory: Optional[Callable[[Optimizer], Any]] = None) -> Any:
    """What a task's ``configure_optimizers`` returns for LightningCLI's optimizer / scheduler callables: the
    optimizer alone, or with its scheduler stepped every training step (the schedules here count steps)."""
    optimizer = optimizer_factory(parameters)
    if scheduler_factory is None:
        return optimizer
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler_factory(optimizer), "interval": "step"}}
