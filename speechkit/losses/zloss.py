"""Two different losses that share the name "z-loss"; kept apart here.

* :class:`ZLoss`: *Exploring the Space of Alternative Loss Functions for Extreme Classification* / "The Z-loss: a
  shift and scale invariant classification loss belonging to the Spherical Family" (de Brebisson & Vincent 2016).
  With ``mu, sigma`` the mean and standard deviation of the D pre-softmax outputs ``o``,
  ``z_c = (o_c - mu) / sigma`` and ``L_Z = (1/a) softplus(a (b - z_c))``. A replacement for cross-entropy, invariant
  to ``o -> alpha o + beta`` (alpha > 0).
* :func:`logz_squared`: the PaLM (Chowdhery et al. 2022) auxiliary penalty ``coef * (log Z)^2`` with
  ``log Z = logsumexp(o)``, *added* to cross-entropy to keep ``log Z`` near 0 (self-normalisation).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from speechkit.errors import SpeechkitError
from speechkit.tensors import IGNORE_INDEX


def _check_pair(logits: Tensor, targets: Tensor) -> None:
    if logits.shape[:-1] != targets.shape:
        raise SpeechkitError(f"targets: expected shape {tuple(logits.shape[:-1])} (logits without the class "
                             f"dimension), got {tuple(targets.shape)}")


def _reduce(values: Tensor, keep: Tensor, reduction: str) -> Tensor:
    """Mean over kept positions (0 if none), sum, or the per-position values (ignored ones set to 0)."""
    values = values * keep
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.sum() / keep.sum().clamp_min(1)


class ZLoss(nn.Module):
    """Z-loss of de Brebisson & Vincent (2016): ``(1/a) softplus(a (b - z_c))``, z_c the target's z-score.

    Args:
        a: sharpness (> 0); large ``a`` tends to a hinge on the z-score margin.
        b: target z-score (> 0); at most ``sqrt(D - 1)`` is reachable. The paper's values were not found; 1 and 5
            are our defaults to grid over.
        reduction: "mean" (over non-ignored positions), "sum" or "none".
        ignore_index: target value whose positions contribute nothing.
    """

    def __init__(self, a: float = 1.0, b: float = 5.0, reduction: Literal["mean", "sum", "none"] = "mean",
                 ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if a <= 0:
            raise SpeechkitError(f"a: expected > 0, got {a}")
        if b <= 0:
            raise SpeechkitError(f"b: expected > 0, got {b}")
        if reduction not in ("mean", "sum", "none"):
            raise SpeechkitError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
        self.a, self.b, self.reduction, self.ignore_index = a, b, reduction, ignore_index

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """logits (..., D), targets (...) integer class ids -> loss (scalar, or (...) with reduction='none')."""
        _check_pair(logits, targets)
        if logits.shape[-1] < 2:
            raise SpeechkitError(f"logits: expected at least 2 classes, got shape {tuple(logits.shape)}")
        keep = targets != self.ignore_index
        safe_targets = torch.where(keep, targets, torch.zeros_like(targets))
        mean = logits.mean(-1)
        std = logits.var(-1, correction=0).sqrt().clamp_min(torch.finfo(logits.dtype).eps)
        z_target = (logits.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1) - mean) / std
        losses = F.softplus(self.b - z_target, beta=self.a)  # = log(1 + exp(a (b - z))) / a
        return _reduce(losses, keep.to(losses.dtype), self.reduction)


def logz_squared(logits: Tensor, coef: float = 1e-4, mask: Tensor | None = None) -> Tensor:
    """PaLM's log-partition penalty ``coef * mean((logsumexp(o))^2)`` (not the Z-loss of de Brebisson & Vincent).

    Args:
        logits: (..., D).
        coef: weight of the penalty (PaLM: 1e-4).
        mask: (...) bool/0-1 positions to include (default all).
    """
    log_z = torch.logsumexp(logits, dim=-1)  # (...)
    if mask is None:
        return coef * (log_z ** 2).mean()
    if mask.shape != log_z.shape:
        raise SpeechkitError(f"mask: expected shape {tuple(log_z.shape)}, got {tuple(mask.shape)}")
    return coef * _reduce(log_z ** 2, mask.to(log_z.dtype), "mean")


class CrossEntropyWithLogZPenalty(nn.Module):
    """Cross-entropy plus PaLM's ``z_coef * (log Z)^2`` penalty on the same logits (ignored positions excluded)."""

    def __init__(self, z_coef: float = 1e-4, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if z_coef < 0:
            raise SpeechkitError(f"z_coef: expected >= 0, got {z_coef}")
        self.z_coef, self.ignore_index = z_coef, ignore_index

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """logits (..., D), targets (...) -> scalar."""
        _check_pair(logits, targets)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=self.ignore_index)
        return ce + logz_squared(logits, self.z_coef, mask=targets != self.ignore_index)
