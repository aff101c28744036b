"""Fake quantization: number formats simulated in float32 (quantize, then dequantize).

* Uniform INT-k, symmetric or asymmetric, per tensor / per output channel (row) / per group of ``group_size``
  consecutive inputs of a row (GPTQ, Q-BERT group-wise quantization, CPTQuant per-layer INT).
* Minifloats FP8 E4M3 (max 448), FP8 E5M2 (max 57344) and FP4 E2M1 (grid {0, 0.5, 1, 1.5, 2, 3, 4, 6}), with
  round-to-nearest-even or stochastic rounding and an optional per-tensor / channel / group scale (SNIP,
  Pan et al. 2026, tile-wise scaling).
* Bit masking of float32 values to ``exp_bits`` / ``man_bits`` as in "To FP8 and Back Again" (Lee et al. 2024):
  mantissa truncation (or round-to-nearest-even) on the bit pattern, exponent range clamped (saturate / flush).

Weights follow ``nn.Linear``: ``(out, in)``; channel = output row, groups run along the input dimension.
torch casts exist only for FP8 without saturation (values above the maximum become NaN in E4M3FN), and torch has no
FP4 arithmetic, so the rounding is written by hand once for every minifloat; the tests check it against torch's
float8 casts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from speechkit.errors import SpeechkitError

Granularity = Literal["tensor", "channel", "group"]
FloatFormat = Literal["e4m3", "e5m2", "e2m1"]
TensorFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Minifloat:
    """A float format without inf/NaN codes: ``exp_bits``, ``man_bits``, exponent ``bias`` and largest finite value."""

    exp_bits: int
    man_bits: int
    bias: int
    max_value: float

    @property
    def min_normal_exponent(self) -> int:
        return 1 - self.bias


FORMATS: dict[str, Minifloat] = {
    "e4m3": Minifloat(4, 3, 7, 448.0),  # OCP FP8 E4M3FN: exponent 15 is used, only S.1111.111 is NaN
    "e5m2": Minifloat(5, 2, 15, 57344.0),  # IEEE-like; the top exponent holds inf/NaN
    "e2m1": Minifloat(2, 1, 1, 6.0),  # OCP MX FP4
}


def check_bits(bits: int, name: str = "bits") -> int:
    """Return ``bits`` if it is an integer in [2, 16], else raise ``SpeechkitError`` naming ``name``."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise SpeechkitError(f"{name} must be an integer in [2, 16], got {bits!r}")
    return bits


def check_group_size(group_size: int | None, row_length: int, name: str = "group_size") -> int:
    """Return the group size (``None`` or -1 mean the whole row); it must divide ``row_length``."""
    if group_size is None or group_size == -1:
        return row_length
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size <= 0:
        raise SpeechkitError(f"{name} must be a positive integer, -1 or None, got {group_size!r}")
    if row_length % group_size:
        raise SpeechkitError(f"{name}={group_size} does not divide the row length {row_length}")
    return group_size


def _grouped(x: Tensor, granularity: Granularity, group_size: int | None) -> Tensor:
    """View ``x`` as ``(units, elements)`` where each unit shares one scale."""
    if granularity == "tensor":
        return x.reshape(1, -1)
    if x.dim() < 2:
        raise SpeechkitError(f"granularity={granularity!r} needs a 2-D weight (out, in), got shape {tuple(x.shape)}")
    rows = x.reshape(x.shape[0], -1)  # (out, in)
    if granularity == "channel":
        return rows
    if granularity == "group":
        size = check_group_size(group_size, rows.shape[1])
        return rows.reshape(-1, size)  # (out * in / g, g)
    raise SpeechkitError(f"granularity must be 'tensor', 'channel' or 'group', got {granularity!r}")


def int_scale_zero(x: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Scale and zero point of a uniform grid covering each row of ``x`` (rows share nothing).

    Asymmetric: the range [min(x, 0), max(x, 0)] maps onto {0, ..., 2^b - 1} (GPTQ's convention, so 0 is exact).
    Symmetric: max|x| maps onto 2^(b-1) - 1, codes in {-2^(b-1), ..., 2^(b-1) - 1}, zero point 0.

    Args:
        x: ``(units, elements)``.
        bits: bit width in [2, 16].
        symmetric: symmetric grid around 0.

    Returns:
        ``scale`` and ``zero``, both ``(units, 1)``.
    """
    check_bits(bits)
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = x.abs().amax(dim=1, keepdim=True) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        return scale, torch.zeros_like(scale)
    lo = x.amin(dim=1, keepdim=True).clamp(max=0)
    hi = x.amax(dim=1, keepdim=True).clamp(min=0)
    scale = (hi - lo) / (2**bits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, torch.round(-lo / scale)


def int_quantize(x: Tensor, scale: Tensor, zero: Tensor, bits: int, symmetric: bool) -> Tensor:
    """Round ``x`` to the grid ``scale * (q - zero)`` and return the dequantized values (broadcasting)."""
    if symmetric:
        q = torch.clamp(torch.round(x / scale), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        return q * scale
    q = torch.clamp(torch.round(x / scale) + zero, 0, 2**bits - 1)
    return scale * (q - zero)


def fake_quant_int(
    x: Tensor,
    bits: int,
    symmetric: bool = True,
    granularity: Granularity = "tensor",
    group_size: int | None = None,
) -> Tensor:
    """Uniform INT-``bits`` fake quantization of ``x`` (same shape and dtype as ``x``).

    Args:
        x: any tensor; ``(out, in)`` for ``granularity`` "channel" or "group".
        bits: bit width in [2, 16].
        symmetric: symmetric (zero point 0) or asymmetric grid.
        granularity: one scale per tensor, per output row, or per ``group_size`` inputs of a row.
        group_size: inputs per group; must divide the row length.
    """
    check_bits(bits)
    units = _grouped(x.float(), granularity, group_size)
    scale, zero = int_scale_zero(units, bits, symmetric)
    return int_quantize(units, scale, zero, bits, symmetric).reshape(x.shape).to(x.dtype)


def _minifloat_format(fmt: FloatFormat | Minifloat) -> Minifloat:
    if isinstance(fmt, Minifloat):
        return fmt
    if fmt not in FORMATS:
        raise SpeechkitError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
    return FORMATS[fmt]


def round_to_minifloat(
    x: Tensor,
    fmt: FloatFormat | Minifloat,
    rounding: Literal["nearest", "stochastic"] = "nearest",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Round float32 values to the nearest value of a minifloat format, saturating at its largest finite value.

    The quantum at ``|x|`` is ``2^(e - man_bits)`` with ``e = max(floor(log2|x|), 1 - bias)`` (subnormals kept);
    nearest rounding is round-half-to-even, stochastic rounding rounds up with probability equal to the remainder
    (unbiased, SNIP's FP4 gradients).
    """
    spec = _minifloat_format(fmt)
    x = x.float()
    mag = x.abs()
    exponent = torch.floor(torch.log2(torch.where(mag > 0, mag, torch.ones_like(mag))))
    exponent = exponent.clamp(min=spec.min_normal_exponent)
    quantum = torch.exp2(exponent - spec.man_bits)
    if rounding == "nearest":
        steps = torch.round(x / quantum)
    elif rounding == "stochastic":
        noise = torch.rand(x.shape, generator=generator, device=x.device)
        steps = torch.floor(x / quantum + noise)
    else:
        raise SpeechkitError(f"rounding must be 'nearest' or 'stochastic', got {rounding!r}")
    return torch.clamp(steps * quantum, -spec.max_value, spec.max_value)


def fake_quant_float(
    x: Tensor,
    fmt: FloatFormat | Minifloat,
    granularity: Literal["none", "tensor", "channel", "group"] = "none",
    group_size: int | None = None,
    rounding: Literal["nearest", "stochastic"] = "nearest",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Minifloat fake quantization of ``x``, optionally with a scale so that each unit's max|x| maps to the format max.

    Args:
        x: any tensor; ``(out, in)`` for "channel" / "group" (a group of 128 is SNIP's 1x128 tile).
        fmt: "e4m3", "e5m2", "e2m1" or a ``Minifloat``.
        granularity: "none" rounds the raw values; otherwise one scale per tensor, row or group.
        group_size: inputs per group; must divide the row length.
        rounding: "nearest" (half to even) or "stochastic".
        generator: random source for stochastic rounding.
    """
    spec = _minifloat_format(fmt)
    if granularity == "none":
        return round_to_minifloat(x, spec, rounding, generator).to(x.dtype)
    units = _grouped(x.float(), granularity, group_size)  # (units, elements)
    scale = units.abs().amax(dim=1, keepdim=True) / spec.max_value
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    out = round_to_minifloat(units / scale, spec, rounding, generator) * scale
    return out.reshape(x.shape).to(x.dtype)


def mask_float(
    x: Tensor,
    exp_bits: int = 8,
    man_bits: int = 23,
    rounding: Literal["rtz", "rne"] = "rtz",
    subnormals: bool = True,
) -> Tensor:
    """Reduce float32 values to ``exp_bits`` exponent and ``man_bits`` mantissa bits ("To FP8 and Back Again").

    The paper simulates low-precision GEMM inputs by masking bits; its exact rule is not published, so this is
    our interpretation [D]: the mantissa is truncated on the float32 bit pattern (``rtz``) or rounded to nearest
    even (``rne``); unbiased exponents are limited to [-(2^(e-1) - 2), 2^(e-1) - 1]: larger magnitudes saturate to
    the largest finite value ``2^emax * (2 - 2^-m)``, smaller ones round onto the subnormal grid
    ``2^(emin - m)`` (``subnormals=True``) or flush to zero. ``man_bits=7, exp_bits=8`` is bfloat16 truncation.

    Args:
        x: float tensor (computed in float32).
        exp_bits: exponent bits kept, 2 to 8.
        man_bits: mantissa bits kept, 0 to 23.
        rounding: "rtz" (truncate) or "rne" (round to nearest, ties to even).
        subnormals: keep values below the smallest normal on the subnormal grid instead of flushing them to 0.
    """
    if not 2 <= exp_bits <= 8:
        raise SpeechkitError(f"exp_bits must be in [2, 8], got {exp_bits}")
    if not 0 <= man_bits <= 23:
        raise SpeechkitError(f"man_bits must be in [0, 23], got {man_bits}")
    bits = x.float().contiguous().view(torch.int32)
    drop = 23 - man_bits
    if drop:
        if rounding == "rne":
            bits = bits + ((1 << (drop - 1)) - 1) + ((bits >> drop) & 1)
        elif rounding != "rtz":
            raise SpeechkitError(f"rounding must be 'rtz' or 'rne', got {rounding!r}")
        bits = bits & ~((1 << drop) - 1)
    y = bits.view(torch.float32)
    emax, emin = 2 ** (exp_bits - 1) - 1, -(2 ** (exp_bits - 1) - 2)
    largest = 2.0**emax * (2 - 2.0**-man_bits)
    y = torch.where(y.abs() > largest, torch.sign(y) * largest, y)
    tiny = y.abs() < 2.0**emin
    if subnormals:
        quantum = 2.0 ** (emin - man_bits)
        snapped = torch.trunc(y / quantum) if rounding == "rtz" else torch.round(y / quantum)
        return torch.where(tiny, snapped * quantum, y)
    return torch.where(tiny, torch.zeros_like(y), y)


class FakeQuantLinear(torch.nn.Module):
    """Wrap an ``nn.Linear`` so both GEMM operands pass through fake-quant functions (masked-GEMM simulation of
    "To FP8 and Back Again", or FP8 / FP4 / INT-k formats), with straight-through gradients.

    Args:
        linear: the layer (kept, its weight stays the trainable full-precision master copy).
        weight_fn: ``(out, in) -> (out, in)`` fake quantization of the weight, e.g.
            ``lambda w: fake_quant_float(w, "e4m3", "channel")``; ``None`` leaves it.
        input_fn: ``(..., in) -> (..., in)`` fake quantization of the input, e.g.
            ``lambda x: mask_float(x, exp_bits=4, man_bits=3)``; ``None`` leaves it.
    """

    def __init__(self, linear: torch.nn.Linear, weight_fn: TensorFn | None = None,
                 input_fn: TensorFn | None = None) -> None:
        super().__init__()
        self.linear, self.weight_fn, self.input_fn = linear, weight_fn, input_fn

    @staticmethod
    def _ste(x: Tensor, fn: TensorFn | None) -> Tensor:
        return x if fn is None else x + (fn(x.detach()) - x).detach()

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.linear(self._ste(x, self.input_fn), self._ste(self.linear.weight, self.weight_fn),
                                          self.linear.bias)
