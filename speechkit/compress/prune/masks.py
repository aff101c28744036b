"""Pruning masks on named ``nn.Linear`` weights and the gradual (cubic) magnitude schedule.

Zhu & Gupta, "To prune, or not to prune" (2017), Eq. 1, the schedule Kurtic et al. 2023 ("Sparse Fine-tuning for
Inference Acceleration of Large Language Models", SquareHead) use for gradual pruning of T5 / Whisper:
``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n dt))^3`` for ``t_0 <= t <= t_0 + n dt``, pruning every ``dt`` steps,
then fine-tuning at ``s_f`` with the mask held fixed (masks re-applied after each optimizer step).

Masks are plain boolean tensors kept by the manager and multiplied into the weights; the model keeps its own
parameter names (``torch.nn.utils.prune`` would rename ``weight`` to ``weight_orig`` and break HF checkpoints).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from speechkit.compress.prune.magnitude import check_sparsity, magnitude_mask
from speechkit.errors import SpeechkitError


def find_linears(model: nn.Module, patterns: str | Sequence[str]) -> dict[str, nn.Linear]:
    """The ``nn.Linear`` modules whose names match any glob pattern (``"decoder.layers.*.fc1"``), in model order.

    Raises:
        SpeechkitError: a pattern matches no ``nn.Linear`` (the message names it).
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    if not patterns:
        raise SpeechkitError("targets must name at least one module pattern")
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    found: dict[str, nn.Linear] = {}
    for pattern in patterns:
        hits = [name for name in linears if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise SpeechkitError(f"targets: pattern {pattern!r} matches no nn.Linear in the model")
        found.update({name: linears[name] for name in hits})
    return {name: found[name] for name in linears if name in found}


def cubic_sparsity(step: int, final: float, initial: float = 0.0, start: int = 0, end: int = 1) -> float:
    """Zhu & Gupta's cubic schedule: ``initial`` before ``start``, ``final`` from ``end`` on, cubic in between."""
    check_sparsity(final, "final")
    check_sparsity(initial, "initial")
    if end <= start:
        raise SpeechkitError(f"end ({end}) must be after start ({start})")
    progress = min(max((step - start) / (end - start), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


@dataclass(frozen=True)
class GradualSchedule:
    """When and how much to prune: cubic from ``initial`` at ``start`` to ``final`` at ``end``, every ``every``
    steps."""

    final: float
    start: int = 0
    end: int = 1000
    every: int = 100
    initial: float = 0.0

    def __post_init__(self) -> None:
        cubic_sparsity(self.start, self.final, self.initial, self.start, self.end)
        if self.every <= 0:
            raise SpeechkitError(f"every must be a positive number of steps, got {self.every}")

    def sparsity_at(self, step: int) -> float:
        return cubic_sparsity(step, self.final, self.initial, self.start, self.end)

    def should_prune(self, step: int) -> bool:
        """True at ``start``, every ``every`` steps after it, and at ``end`` (so ``final`` is always reached)."""
        return step == self.end or (self.start <= step < self.end and (step - self.start) % self.every == 0)


class MaskManager:
    """Boolean keep-masks on the weights of the ``nn.Linear`` modules matched by ``targets`` (glob patterns).

    ``prune(sparsity)`` recomputes each mask by magnitude (per layer; already-pruned weights are 0 and stay
    pruned) and applies it; ``apply()`` re-zeroes masked weights (call it after every optimizer step).
    """

    def __init__(self, model: nn.Module, targets: str | Sequence[str]) -> None:
        self.modules = find_linears(model, targets)
        self.masks: dict[str, Tensor] = {
            name: torch.ones_like(m.weight, dtype=torch.bool) for name, m in self.modules.items()
        }

    @torch.no_grad()
    def prune(self, sparsity: float) -> None:
        check_sparsity(sparsity)
        for name, module in self.modules.items():
            self.masks[name] = magnitude_mask(module.weight * self.masks[name], sparsity) & self.masks[name]
        self.apply()

    @torch.no_grad()
    def set_masks(self, masks: dict[str, Tensor]) -> None:
        """Use given keep-masks (e.g. the zeros of a SparseGPT result); names and shapes must match."""
        for name, mask in masks.items():
            if name not in self.modules or mask.shape != self.modules[name].weight.shape:
                raise SpeechkitError(f"masks: {name!r} is not a managed weight of that shape")
            self.masks[name] = mask.to(torch.bool)
        self.apply()

    @torch.no_grad()
    def apply(self) -> None:
        for name, module in self.modules.items():
            module.weight.mul_(self.masks[name].to(module.weight.device))

    def sparsity(self) -> dict[str, float]:
        """Fraction of exact zeros in each managed weight."""
        return {name: (m.weight == 0).float().mean().item() for name, m in self.modules.items()}


def masks_from_zeros(model: nn.Module, targets: str | Sequence[str]) -> dict[str, Tensor]:
    """Keep-masks that freeze the current zeros of the matched weights (after one-shot SparseGPT)."""
    return {name: m.weight.detach() != 0 for name, m in find_linears(model, targets).items()}
