"""Round-to-nearest (RTN) weight quantization: the baseline GPTQ and BAQ are measured against."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from speechkit.compress.quant.formats import check_bits, check_group_size, fake_quant_int


def quantize_rtn(weight: Tensor, bits: int, group_size: int | None = None, symmetric: bool = False) -> Tensor:
    """Quantize every output row (or every group of ``group_size`` inputs of a row) to the nearest grid point.

    Args:
        weight: ``(out, in)`` linear weight.
        bits: bit width in [2, 16].
        group_size: inputs sharing one scale; ``None`` / -1 = one scale per row. Must divide ``in``.
        symmetric: symmetric grid (zero point 0) instead of GPTQ's asymmetric min/max grid.

    Returns:
        The dequantized weight, ``(out, in)``, same dtype.
    """
    check_bits(bits)
    size = check_group_size(group_size, weight.shape[-1])
    return fake_quant_int(weight, bits, symmetric=symmetric, granularity="group", group_size=size)


def quantize_weights(model: nn.Module, targets: str | Sequence[str], fn: Callable[[Tensor], Tensor]) -> list[str]:
    """Replace the weight of every ``nn.Linear`` matched by the glob ``targets`` with ``fn(weight)`` in place.

    E.g. ``quantize_weights(model, "*.fc1", lambda w: quantize_rtn(w, 4, 128))`` or
    ``lambda w: fake_quant_float(w, "e2m1", "group", 32)``. Returns the names changed.
    """
    from speechkit.compress.prune.masks import find_linears

    linears = find_linears(model, targets)
    with torch.no_grad():
        for linear in linears.values():
            linear.weight.copy_(fn(linear.weight.detach()))
    return list(linears)
