"""Gated LoRA: low-rank adapters that act only on the positions a gate marks.

*Your LLM Knows the Future: Uncovering Its Multi-Token Prediction Potential* (Samragh et al. 2025), section 3.2:
``h = W x + g * (alpha / r) * B A x`` with ``g = 1`` on the appended mask tokens and ``g = 0`` on ordinary
tokens, so the fine-tuned model's next-token predictions on ordinary tokens are exactly the base model's. peft's
LoRA has no per-token gate, so this small module is written here; the gate reaches every adapted layer through a
context (:func:`lora_gate`) instead of new forward arguments, so any ``transformers`` model runs unchanged.
"""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar
from typing import Iterator, Optional, Sequence

import torch
from torch import nn

from speechkit.errors import SpeechkitError

_GATE: ContextVar[Optional[torch.Tensor]] = ContextVar("speechkit_lora_gate", default=None)


@contextlib.contextmanager
def lora_gate(gate: torch.Tensor) -> Iterator[None]:
    """Inside the block, every :class:`GatedLoRALinear` adds its update where ``gate`` ``(B, T)`` is true (the
    adapted layer's input is ``(B, T, features)``); outside it, none does."""
    token = _GATE.set(gate.bool())
    try:
        yield
    finally:
        _GATE.reset(token)


class GatedLoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a rank-``r`` update ``(alpha / r) B A x`` applied where the gate is on.

    ``B`` starts at zero (the adapted model starts as the base model), ``A`` as in LoRA (Kaiming uniform).
    Where the gate is off the output is the base layer's output, bit for bit (a select, not an addition of zero).
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank < 1:
            raise SpeechkitError(f"rank: expected >= 1, got {rank}")
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        gate = _GATE.get()
        if gate is None:
            return out
        if gate.shape != x.shape[:-1]:
            raise SpeechkitError(f"lora gate: shape {tuple(gate.shape)} does not match the layer input's positions "
                                 f"{tuple(x.shape[:-1])}")
        update = (x @ self.lora_a.t()) @ self.lora_b.t() * self.scaling
        return torch.where(gate[..., None], out + update, out)


def apply_gated_lora(model: nn.Module, rank: int = 128, alpha: float = 256.0,
                     target_modules: Sequence[str] = ("q_proj", "k_proj", "v_proj", "o_proj"),
                     within: Sequence[str] = ()) -> list[str]:
    """Freeze the model and replace the ``nn.Linear`` layers whose name ends in one of ``target_modules`` (and
    contains every part of ``within``, e.g. ``("decoder", "self_attn")`` for Whisper: a gate marks decoder tokens, not
    the encoder states that cross-attention projects) by :class:`GatedLoRALinear`, whose adapters alone train;
    returns the names replaced (an error if none)."""
    names = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and name.split(".")[-1] in target_modules
             and all(part in name for part in within)]
    if not names:
        raise SpeechkitError(f"target_modules {list(target_modules)}: no nn.Linear of the model matches "
                             f"(within {list(within)})")
    model.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, GatedLoRALinear(getattr(parent, child), rank, alpha))
    return names
