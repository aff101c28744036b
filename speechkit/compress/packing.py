"""Packed storage of compressed weights: what a pruned or quantized weight takes on disk, and back, bit for bit.

speechkit's quantizers are simulated: they return a float32 weight whose values lie on a grid. These functions find
that grid again and store only what it needs; unpacking computes the float32 weight the way the quantizer did.

* **INT-k** (RTN, GPTQ, Q-BERT's blocks; BAQ's per-column widths): the integer codes bit-packed (8 bits: one byte
  each, 4: two per byte, 3 / 2: codes straddle bytes), one float32 scale and one k-bit zero point per group (or
  row). A weight is ``scale * (code - zero)``, as in :func:`speechkit.compress.quant.formats.int_quantize`.
* **Sparse** (magnitude, SparseGPT): the nonzero float32 values in row-major order and a 1-bit-per-entry mask.
* **Minifloat** (FP8 E4M3 / E5M2, FP4 E2M1): a sign bit and the index of the magnitude among the format's values
  (8 or 4 bits, bit-packed), and the float32 scale per tensor / row / group.

The grid is recovered from the weight alone (the step is the smallest gap between its values, refined by least
squares to the float32 scale that reproduces every value), so a weight made in float32 (RTN, minifloats) unpacks
exactly. GPTQ computes in float64: its values may be one rounding away from any float32 grid, so a caller that
must store exactly the weight it evaluates replaces the weight by ``unpack(pack(weight))`` first (a change of at
most a few units in the last place; ``unpack(pack(.))`` of that is exact).

A layout (a JSON-serializable dict, kept in the packed file's metadata) says how a weight is stored:

* ``{"kind": "int", "shape": [out, in], "bits": 4, "group_size": 128}`` (``group_size`` ``None``: one grid a row);
* ``{"kind": "int", "shape": [out, in], "column_bits": true}``: a width per input column (its ``column_bits``
  tensor stored beside the codes), one grid per row and width;
* ``{"kind": "sparse", "shape": [...]}``;
* ``{"kind": "minifloat", "shape": [...], "format": "e2m1", "granularity": "group", "group_size": 32}``
  (``granularity`` ``none`` / ``tensor`` / ``channel`` / ``group``).

Tensors: weights ``(out, in)``; ``U`` grids (groups or rows) of ``n`` values each.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import torch
from torch import Tensor

from speechkit.compress.quant.formats import (
    FORMATS,
    check_group_size,
    round_to_minifloat,
)
from speechkit.errors import SpeechkitError

MAX_PACKED_BITS = 8  # codes are stored in bytes; wider INT grids have no packed format here
_ULPS = 3  # float32 scales tried on either side of the least-squares one


# ------------------------------------------------------------------ bits
def pack_bits(codes: Tensor, bits: int) -> Tensor:
    """Store integer codes in [0, 2^bits) with ``bits`` bits each, least significant bit first.

    Args:
        codes: any shape, integer values in [0, 2^bits); flattened row-major.
        bits: 1 to 8.

    Returns:
        ``(ceil(numel * bits / 8),)`` uint8, the last byte padded with zero bits.
    """
    _check_width(bits)
    flat = codes.reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= 2**bits):
        raise SpeechkitError(f"codes must lie in [0, {2**bits - 1}] for {bits} bits, "
                             f"got [{int(flat.min())}, {int(flat.max())}]")
    flat = flat.to(torch.uint8)
    if bits == 8:
        return flat.clone()
    planes = ((flat.unsqueeze(1) >> torch.arange(bits, dtype=torch.uint8)) & 1).reshape(-1)  # (numel * bits,)
    planes = torch.nn.functional.pad(planes, (0, -planes.numel() % 8)).reshape(-1, 8)
    packed = torch.zeros(planes.shape[0], dtype=torch.uint8)
    for i in range(8):
        packed |= planes[:, i] << i
    return packed


def unpack_bits(packed: Tensor, bits: int, count: int) -> Tensor:
    """The first ``count`` codes of :func:`pack_bits` output, ``(count,)`` uint8."""
    _check_width(bits)
    if packed.numel() * 8 < count * bits:
        raise SpeechkitError(f"{packed.numel()} packed bytes hold fewer than {count} codes of {bits} bits")
    if bits == 8:
        return packed[:count].clone()
    planes = ((packed.unsqueeze(1) >> torch.arange(8, dtype=torch.uint8)) & 1).reshape(-1)[: count * bits]
    planes = planes.reshape(count, bits)
    codes = torch.zeros(count, dtype=torch.uint8)
    for i in range(bits):
        codes |= planes[:, i] << i
    return codes


def _check_width(bits: int) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_PACKED_BITS:
        raise SpeechkitError(f"packed codes are 1 to {MAX_PACKED_BITS} bits wide, got {bits!r}")


# ------------------------------------------------------------------ integer grids
def fit_int_grid(units: Tensor, bits: int) -> tuple[Tensor, Tensor, Tensor]:
    """Codes, scale and zero point of rows that each lie on a ``bits``-bit uniform grid ``scale * (code - zero)``.

    The step is the smallest gap between a row's values (0 included, as on every grid that quantizers here fit),
    divided by the first ``d`` that puts every value on a multiple of it to float32 rounding; the float32 scale is
    the least-squares one or one of its float32 neighbours, whichever reproduces the most values exactly.

    Args:
        units: ``(U, n)`` float weights, each row on its own grid.
        bits: 1 to 8.

    Returns:
        ``codes`` ``(U, n)`` uint8 in [0, 2^bits), ``scale`` ``(U,)`` float32, ``zero`` ``(U,)`` uint8.

    Raises:
        SpeechkitError: a row is not on a grid of ``2^bits`` levels that contains 0.
    """
    _check_width(bits)
    x = units.detach().double()
    levels = 2**bits - 1
    steps = _grid_steps(x, levels)
    k = torch.round(x / steps.unsqueeze(1))  # (U, n) signed integers
    scale = _float32_scale(units.detach().float(), k)
    low = k.amin(dim=1)
    zero = (-low).clamp(min=0)
    codes = k + zero.unsqueeze(1)
    bad = (codes.amax(dim=1) > levels) | (zero > levels)
    if bool(bad.any()):
        raise SpeechkitError(f"{int(bad.sum())} of {len(bad)} groups are not on a {bits}-bit grid containing 0")
    return codes.to(torch.uint8), scale, zero.to(torch.uint8)


def _grid_steps(x: Tensor, levels: int) -> Tensor:
    """The grid step of every row of ``x`` ``(U, n)`` (float64); 1 for a row of zeros.

    A candidate step (the smallest gap / ``d``) is taken when every value is near a multiple of it, the multiples
    span at most ``levels``, and the least-squares step reproduces every value to float32 rounding (a step that
    only happens to fit a few values to 0.05 fails that)."""
    values = torch.cat([x, torch.zeros(x.shape[0], 1, dtype=x.dtype)], dim=1).sort(dim=1).values
    gaps = values.diff(dim=1)
    gaps = torch.where(gaps > 0, gaps, torch.full_like(gaps, math.inf)).amin(dim=1)  # (U,)
    gaps = torch.where(torch.isfinite(gaps), gaps, torch.ones_like(gaps))
    tolerance = 4 * 2.0**-24 * x.abs().amax(dim=1, keepdim=True)  # (U, 1): a few float32 roundings
    steps = torch.full_like(gaps, math.nan)
    todo = torch.arange(x.shape[0])
    for divisor in range(1, levels + 1):  # the smallest gap is 1..levels steps
        rows = x[todo]
        ratio = rows / (gaps[todo] / divisor).unsqueeze(1)
        k = torch.round(ratio)
        fitted = _least_squares_step(rows, k)
        on_grid = ((ratio - k).abs() <= 0.05).all(dim=1) & (k.amax(dim=1) - k.amin(dim=1) <= levels)
        on_grid &= ((fitted.unsqueeze(1) * k - rows).abs() <= tolerance[todo]).all(dim=1)
        steps[todo[on_grid]] = fitted[on_grid]
        todo = todo[~on_grid]
        if not len(todo):
            return steps
    raise SpeechkitError(f"{len(todo)} of {x.shape[0]} groups are not on a grid of {levels + 1} levels")


def _least_squares_step(x: Tensor, k: Tensor) -> Tensor:
    """``argmin_s |s k - x|^2`` per row of ``(U, n)`` float64 values and integer multiples; 1 where ``k`` is 0."""
    norm = (k * k).sum(dim=1)
    fitted = (k * x).sum(dim=1) / torch.where(norm > 0, norm, torch.ones_like(norm))
    return torch.where(norm > 0, fitted, torch.ones_like(fitted))


def _float32_scale(units: Tensor, k: Tensor) -> Tensor:
    """The float32 scale per row that makes ``scale * k`` (float32) equal the most of ``units`` ``(U, n)``."""
    k32 = k.float()
    fitted = _least_squares_step(units.double(), k).float()  # (U,)
    best, best_miss = fitted, _misses(fitted, k32, units)
    for direction in (math.inf, -math.inf):
        candidate = fitted
        for _ in range(_ULPS):
            candidate = torch.nextafter(candidate, torch.full_like(candidate, direction))
            miss = _misses(candidate, k32, units)
            better = miss < best_miss
            best, best_miss = torch.where(better, candidate, best), torch.where(better, miss, best_miss)
    return best


def _misses(scale: Tensor, k: Tensor, units: Tensor) -> Tensor:
    return (scale.unsqueeze(1) * k != units).sum(dim=1)


def dequantize_int(codes: Tensor, scale: Tensor, zero: Tensor) -> Tensor:
    """``scale * (code - zero)`` in float32 per row: ``(U, n)`` codes, ``(U,)`` scale and zero."""
    return scale.float().unsqueeze(1) * (codes.float() - zero.float().unsqueeze(1))


def pack_int(weight: Tensor, bits: int, group_size: Optional[int] = None) -> dict[str, Tensor]:
    """An INT-``bits`` weight (one grid per row, or per ``group_size`` inputs of a row) as bit-packed ``codes``,
    float32 ``scale`` and bit-packed ``zero`` (one per grid)."""
    units = weight.reshape(-1, check_group_size(group_size, weight.shape[-1]))  # (U, group)
    codes, scale, zero = fit_int_grid(units, bits)
    return {"codes": pack_bits(codes, bits), "scale": scale, "zero": pack_bits(zero, bits)}


def unpack_int(tensors: dict[str, Tensor], shape: list[int], bits: int, group_size: Optional[int] = None) -> Tensor:
    """The float32 weight of :func:`pack_int` output."""
    size = check_group_size(group_size, shape[-1])
    units = math.prod(shape) // size
    codes = unpack_bits(tensors["codes"], bits, units * size).reshape(units, size)
    zero = unpack_bits(tensors["zero"], bits, units)
    return dequantize_int(codes, tensors["scale"], zero).reshape(shape)


def pack_int_columns(weight: Tensor, column_bits: Tensor) -> dict[str, Tensor]:
    """A weight whose input columns have their own widths (BAQ): per width ``b``, the columns of that width as
    :func:`pack_int` with one grid a row (``b{b}.codes`` / ``.scale`` / ``.zero``), and ``column_bits`` ``(in,)``."""
    column_bits = column_bits.reshape(-1).to(torch.uint8)
    if column_bits.numel() != weight.shape[1]:
        raise SpeechkitError(f"column_bits must have {weight.shape[1]} entries (weight's in), "
                             f"got {column_bits.numel()}")
    packed = {"column_bits": column_bits.clone()}
    for bits in sorted(set(column_bits.tolist())):
        columns = weight[:, column_bits == bits]  # (out, columns of this width)
        packed.update({f"b{bits}.{key}": value for key, value in pack_int(columns, bits).items()})
    return packed


def unpack_int_columns(tensors: dict[str, Tensor], shape: list[int]) -> Tensor:
    """The float32 weight of :func:`pack_int_columns` output."""
    column_bits = tensors["column_bits"]
    weight = torch.zeros(shape, dtype=torch.float32)
    for bits in sorted(set(column_bits.tolist())):
        mask = column_bits == bits
        part = {key.split(".", 1)[1]: value for key, value in tensors.items() if key.startswith(f"b{bits}.")}
        weight[:, mask] = unpack_int(part, [shape[0], int(mask.sum())], bits)
    return weight


# ------------------------------------------------------------------ sparse
def pack_sparse(weight: Tensor) -> dict[str, Tensor]:
    """A pruned weight as its nonzero ``values`` (row-major, float32) and a bit-packed ``mask`` (1 = kept)."""
    keep = weight != 0
    return {"values": weight[keep].float().contiguous(), "mask": pack_bits(keep, 1)}


def unpack_sparse(tensors: dict[str, Tensor], shape: list[int]) -> Tensor:
    """The float32 weight of :func:`pack_sparse` output."""
    keep = unpack_bits(tensors["mask"], 1, math.prod(shape)).bool()
    if int(keep.sum()) != tensors["values"].numel():
        raise SpeechkitError(f"sparse mask keeps {int(keep.sum())} entries but {tensors['values'].numel()} values "
                             "are stored")
    weight = torch.zeros(math.prod(shape), dtype=torch.float32)
    weight[keep] = tensors["values"].float()
    return weight.reshape(shape)


# ------------------------------------------------------------------ minifloats
@lru_cache(maxsize=None)
def minifloat_values(fmt: str) -> Tensor:
    """Every non-negative value of a minifloat format up to its largest finite one, ascending (float32)."""
    spec = _format(fmt)
    mantissa = torch.arange(2**spec.man_bits, dtype=torch.float64) / 2**spec.man_bits
    values = [mantissa * 2.0 ** (1 - spec.bias)]  # subnormals (exponent field 0)
    values += [(1 + mantissa) * 2.0 ** (exponent - spec.bias) for exponent in range(1, 2**spec.exp_bits)]
    every = torch.cat(values)
    return every[every <= spec.max_value].float()


def minifloat_code_bits(fmt: str) -> int:
    """Bits of one packed minifloat code: a sign and the index among :func:`minifloat_values`."""
    return 1 + math.ceil(math.log2(len(minifloat_values(fmt))))


def _format(fmt: str):
    if fmt not in FORMATS:
        raise SpeechkitError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    return FORMATS[fmt]


def _minifloat_units(weight: Tensor, granularity: str, group_size: Optional[int]) -> Tensor:
    """``weight`` viewed as ``(U, n)`` units that share one scale (``none`` and ``tensor``: one unit)."""
    if granularity in ("none", "tensor"):
        return weight.reshape(1, -1)
    if granularity == "channel":
        return weight.reshape(weight.shape[0], -1)
    if granularity == "group":
        return weight.reshape(-1, check_group_size(group_size, weight.shape[-1]))
    raise SpeechkitError(f"granularity must be none, tensor, channel or group, got {granularity!r}")


def pack_minifloat(weight: Tensor, fmt: str, granularity: str = "none",
                   group_size: Optional[int] = None) -> dict[str, Tensor]:
    """A minifloat-rounded weight (:func:`speechkit.compress.quant.formats.fake_quant_float`) as bit-packed
    ``codes`` (sign, index of the magnitude) and, unless ``granularity`` is ``none``, the float32 ``scale`` per
    unit (tensor, row or group): the scale is the one mapping the unit's largest value onto the format's largest,
    or the float32 next to it that reproduces every value."""
    spec = _format(fmt)
    units = _minifloat_units(weight.detach().float(), granularity, group_size)  # (U, n)
    if granularity == "none":
        scale = torch.ones(units.shape[0])
    else:
        scale = _minifloat_scale(units, spec)
    values = round_to_minifloat(units / scale.unsqueeze(1), spec)
    table = minifloat_values(fmt)
    index = torch.searchsorted(table, values.abs()).clamp(max=len(table) - 1)
    if not torch.equal(table[index], values.abs()):
        raise SpeechkitError(f"values are not on the {fmt} grid")
    sign = torch.signbit(values).to(torch.int64) << (minifloat_code_bits(fmt) - 1)
    packed = {"codes": pack_bits(index + sign, minifloat_code_bits(fmt))}
    return packed if granularity == "none" else {**packed, "scale": scale}


def _minifloat_scale(units: Tensor, spec) -> Tensor:
    """Float32 scale per unit ``(U, n)`` that reproduces most of its values (module docstring)."""
    largest = units.abs().amax(dim=1)
    base = largest / spec.max_value
    base = torch.where(base > 0, base, torch.ones_like(base))
    candidates = [base]
    for direction in (math.inf, -math.inf):
        candidate = base
        for _ in range(_ULPS):
            candidate = torch.nextafter(candidate, torch.full_like(candidate, direction))
            candidates.append(candidate)
    best, best_miss = base, None
    for candidate in candidates:
        miss = (round_to_minifloat(units / candidate.unsqueeze(1), spec) * candidate.unsqueeze(1) != units).sum(dim=1)
        if best_miss is None:
            best_miss = miss
            continue
        better = miss < best_miss
        best, best_miss = torch.where(better, candidate, best), torch.where(better, miss, best_miss)
        if not bool(best_miss.any()):
            break
    return best


def unpack_minifloat(tensors: dict[str, Tensor], shape: list[int], fmt: str, granularity: str = "none",
                     group_size: Optional[int] = None) -> Tensor:
    """The float32 weight of :func:`pack_minifloat` output: ``value * scale`` per unit."""
    bits, count = minifloat_code_bits(fmt), math.prod(shape)
    codes = unpack_bits(tensors["codes"], bits, count).to(torch.int64)
    sign_bit = 1 << (bits - 1)
    magnitude = minifloat_values(fmt)[codes & (sign_bit - 1)]
    values = torch.where(codes & sign_bit > 0, -magnitude, magnitude)
    if granularity == "none":
        return values.reshape(shape)
    units = _minifloat_units(values.reshape(shape), granularity, group_size)
    return (units * tensors["scale"].float().unsqueeze(1)).reshape(shape)


# ------------------------------------------------------------------ layouts and state dicts
def pack_weight(weight: Tensor, layout: dict) -> dict[str, Tensor]:
    """Pack one weight as ``layout`` says (module docstring); ``column_bits`` layouts take the widths from
    ``layout["column_bits"]`` given as a tensor here (the stored layout keeps ``true``)."""
    kind = layout.get("kind")
    if list(weight.shape) != list(layout["shape"]):
        raise SpeechkitError(f"weight of shape {list(weight.shape)} does not match its layout {layout['shape']}")
    if kind == "sparse":
        return pack_sparse(weight)
    if kind == "int" and isinstance(layout.get("column_bits"), Tensor):
        return pack_int_columns(weight, layout["column_bits"])
    if kind == "int":
        return pack_int(weight, layout["bits"], layout.get("group_size"))
    if kind == "minifloat":
        return pack_minifloat(weight, layout["format"], layout["granularity"], layout.get("group_size"))
    raise SpeechkitError(f"unknown packed layout kind {kind!r}: expected int, sparse or minifloat")


def unpack_weight(tensors: dict[str, Tensor], layout: dict) -> Tensor:
    """The float32 weight of :func:`pack_weight` output."""
    kind, shape = layout.get("kind"), list(layout["shape"])
    if kind == "sparse":
        return unpack_sparse(tensors, shape)
    if kind == "int" and (layout.get("column_bits") is True or isinstance(layout.get("column_bits"), Tensor)):
        return unpack_int_columns(tensors, shape)
    if kind == "int":
        return unpack_int(tensors, shape, layout["bits"], layout.get("group_size"))
    if kind == "minifloat":
        return unpack_minifloat(tensors, shape, layout["format"], layout["granularity"], layout.get("group_size"))
    raise SpeechkitError(f"unknown packed layout kind {kind!r}: expected int, sparse or minifloat")


def stored_layout(layout: dict) -> dict:
    """``layout`` as kept in a file's metadata: a ``column_bits`` tensor becomes ``true`` (it is stored as a tensor)."""
    return {**layout, "column_bits": True} if isinstance(layout.get("column_bits"), Tensor) else dict(layout)


def pack_state_dict(state: dict[str, Tensor], layouts: dict[str, dict]) -> dict[str, Tensor]:
    """``state`` with every weight named in ``layouts`` replaced by its packed tensors (``<name>.<part>``)."""
    missing = sorted(set(layouts) - set(state))
    if missing:
        raise SpeechkitError(f"layouts name weights the state dict lacks: {', '.join(missing[:3])}")
    packed = {name: tensor for name, tensor in state.items() if name not in layouts}
    for name, layout in layouts.items():
        packed.update({f"{name}.{part}": tensor for part, tensor in pack_weight(state[name], layout).items()})
    return packed


def unpack_state_dict(packed: dict[str, Tensor], layouts: dict[str, dict]) -> dict[str, Tensor]:
    """The state dict :func:`pack_state_dict` was given, from its output and the (stored) layouts."""
    parts: dict[str, dict[str, Tensor]] = {name: {} for name in layouts}
    state = {}
    for key, tensor in packed.items():
        owner = next((name for name in layouts if key.startswith(name + ".")), None)
        if owner is None:
            state[key] = tensor
        else:
            parts[owner][key[len(owner) + 1:]] = tensor
    for name, layout in layouts.items():
        state[name] = unpack_weight(parts[name], layout)
    return state
