"""An exponential moving average of the weights whose decay warms up, on Lightning's ``WeightAveraging``.

Lightning's ``EMAWeightAveraging`` keeps a fixed decay ``d``, so after ``n`` updates the average still holds
``d ** n`` of the initial weights (0.999 keeps 63 % after 465 steps): in a run of a few hundred steps it lags far
behind. :class:`WarmupEMA` decays with

    d_n = min(decay, (1 + n) / (c + n))         n = updates so far, c = warmup_offset > 1

(with ``c = 10``, the default, the ``num_updates`` rule of TensorFlow's ``ExponentialMovingAverage``): the average's
window, ``1 / (1 - d_n) = (c + n) / (c - 1)`` updates, grows with the run and covers roughly the last
``1 / (c - 1)`` of the steps taken (a ninth at ``c = 10``, a third at ``c = 4``) until ``d_n`` reaches ``decay``.
Only this decay rule is written here (neither Lightning nor ``torch.optim.swa_utils`` has it); Lightning's callback
does the rest: the average is swapped in for validation, copied into the model when training ends, saved as the
checkpoint's ``state_dict`` (the live weights under ``current_model_state``) and restored on resume.

YAML: ``trainer.callbacks: [{class_path: speechkit.optim.WarmupEMA, init_args: {decay: 0.999}}]``.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from lightning.pytorch.callbacks import WeightAveraging

from speechkit.errors import SpeechkitError


def ema_decay(updates: int, decay: float, warmup: bool = True, warmup_offset: float = 10.0) -> float:
    """The decay of the update after ``updates`` earlier ones: ``min(decay, (1 + n) / (c + n))`` with warm-up."""
    return min(decay, (1.0 + updates) / (warmup_offset + updates)) if warmup else decay


class _WarmupEMAUpdate:
    """``AveragedModel``'s ``multi_avg_fn``: ``avg <- d avg + (1 - d) current`` for all tensors at once."""

    def __init__(self, decay: float, warmup: bool, warmup_offset: float) -> None:
        self.decay, self.warmup, self.warmup_offset = decay, warmup, warmup_offset

    @torch.no_grad()
    def __call__(self, averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        d = ema_decay(int(updates), self.decay, self.warmup, self.warmup_offset)
        if torch.is_floating_point(averaged[0]) or torch.is_complex(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1.0 - d)
        else:  # integer buffers (counters) follow the model
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)


class WarmupEMA(WeightAveraging):
    """EMA of the weights after every ``every_n_steps`` optimizer steps, with the warmed-up decay of the module
    docstring, ``c = warmup_offset`` (``warmup=False``: the fixed ``decay`` of Lightning's ``EMAWeightAveraging``)."""

    def __init__(self, decay: float = 0.999, warmup: bool = True, warmup_offset: float = 10.0,
                 every_n_steps: int = 1, device: Optional[Union[torch.device, str, int]] = None,
                 use_buffers: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise SpeechkitError(f"WarmupEMA decay: expected a value in (0, 1), got {decay}")
        if not warmup_offset > 1.0:
            raise SpeechkitError(f"WarmupEMA warmup_offset: expected a value > 1, got {warmup_offset}")
        if every_n_steps < 1:
            raise SpeechkitError(f"WarmupEMA every_n_steps: expected >= 1, got {every_n_steps}")
        super().__init__(device=device, use_buffers=use_buffers,
                         multi_avg_fn=_WarmupEMAUpdate(decay, warmup, warmup_offset))
        self.every_n_steps = every_n_steps

    def should_update(self, step_idx: Optional[int] = None, epoch_idx: Optional[int] = None) -> bool:
        return step_idx is not None and (step_idx + 1) % self.every_n_steps == 0

    @property
    def averaged_module(self) -> Optional[torch.nn.Module]:
        """The averaged copy of the LightningModule (``None`` before ``fit`` sets it up)."""
        return None if self._average_model is None else self._average_model.module
