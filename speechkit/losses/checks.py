"""Guard against a loss that became NaN or infinite, reported with the step where it happened."""

from __future__ import annotations

import torch
from torch import Tensor

from speechkit.errors import SpeechkitError


def check_finite(loss: Tensor, step: int, name: str = "loss") -> Tensor:
    """Return ``loss`` unchanged, or raise SpeechkitError naming ``name``, the ``step`` and the bad value.

    Args:
        loss: any tensor (usually the scalar training loss).
        step: the global step, for the message.
        name: what the tensor is ("loss", "z_loss" ...).
    """
    if not bool(torch.isfinite(loss.detach()).all()):
        bad = loss.detach().flatten()
        bad = bad[~torch.isfinite(bad)][0].item()
        raise SpeechkitError(f"{name}: became {bad} at step {step} (shape {tuple(loss.shape)}); lower the learning "
                             "rate, clip gradients or check the inputs of that step")
    return loss
