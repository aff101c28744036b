"""Round-to-nearest (RTN) weight quantization: the baseline GPTQ and BAQ are measured against."""

from __future__ import annotations

from torch import Tensor

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
