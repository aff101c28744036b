"""Packed weights unpack to exactly the weights the simulated quantizers and pruners produce, and take the bits
their format says (codes bit-packed, one float32 scale and a k-bit zero point per grid)."""

from __future__ import annotations

import pytest
import torch

from speechkit.compress.packing import (
    minifloat_code_bits,
    pack_bits,
    pack_int,
    pack_int_columns,
    pack_minifloat,
    pack_sparse,
    pack_state_dict,
    stored_layout,
    unpack_bits,
    unpack_int,
    unpack_int_columns,
    unpack_minifloat,
    unpack_sparse,
    unpack_state_dict,
)
from speechkit.compress.prune import magnitude_prune
from speechkit.compress.quant import fake_quant_float, gptq, gptq_baq, quantize_rtn
from speechkit.errors import SpeechkitError


def nbytes(tensors: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


@pytest.fixture
def weight() -> torch.Tensor:
    return torch.randn(48, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 7, 8])
def test_bits_round_trip_and_take_bits_per_code(bits: int) -> None:
    codes = torch.randint(0, 2**bits, (1001,), generator=torch.Generator().manual_seed(bits))
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-1001 * bits // 8)
    assert torch.equal(unpack_bits(packed, bits, 1001).long(), codes)


def test_two_4_bit_codes_share_a_byte_low_nibble_first() -> None:
    assert pack_bits(torch.tensor([1, 2, 15]), 4).tolist() == [0x21, 0x0F]
    assert pack_bits(torch.tensor([1, 0, 1, 1, 0, 0, 0, 0, 1]), 1).tolist() == [0b1101, 1]
    with pytest.raises(SpeechkitError, match=r"codes must lie in \[0, 7\] for 3 bits"):
        pack_bits(torch.tensor([8]), 3)


@pytest.mark.parametrize("bits, group_size", [(8, None), (4, 16), (4, None), (3, 32), (2, 16)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_rtn_weights_unpack_bit_for_bit(weight, bits: int, group_size, symmetric: bool) -> None:
    quantized = quantize_rtn(weight, bits, group_size, symmetric=symmetric)
    packed = pack_int(quantized, bits, group_size)
    assert torch.equal(unpack_int(packed, list(weight.shape), bits, group_size), quantized)
    grids = weight.numel() // (group_size or weight.shape[1])
    assert nbytes(packed) == -(-weight.numel() * bits // 8) + 4 * grids + -(-grids * bits // 8)


def test_a_4_bit_weight_packs_below_a_third_of_float32(weight) -> None:
    packed = pack_int(quantize_rtn(weight, 4, 16), 4, 16)
    assert nbytes(packed) < 0.3 * 4 * weight.numel()  # 4 bits + (32 + 4) / 16 = 6.25 bits per weight


def test_gptq_weights_pack_within_one_rounding_and_their_unpacked_form_exactly(weight) -> None:
    inputs = torch.randn(256, 64, generator=torch.Generator().manual_seed(1))
    quantized = gptq(weight, inputs, 4, 16)  # computed in float64, rounded to float32
    unpacked = unpack_int(pack_int(quantized, 4, 16), list(weight.shape), 4, 16)
    assert torch.allclose(unpacked, quantized, rtol=2.5e-7, atol=0)
    assert torch.equal(unpack_int(pack_int(unpacked, 4, 16), list(weight.shape), 4, 16), unpacked)


def test_per_column_widths_of_baq_round_trip(weight) -> None:
    inputs = torch.randn(256, 64, generator=torch.Generator().manual_seed(2)) * torch.logspace(-2, 1, 64)
    quantized, bits = gptq_baq(weight, inputs, 4)
    assert len(set(bits.tolist())) > 1
    packed = pack_int_columns(quantized, bits)
    unpacked = unpack_int_columns(packed, list(weight.shape))
    assert torch.allclose(unpacked, quantized, rtol=2.5e-7, atol=0)
    assert torch.equal(unpack_int_columns(pack_int_columns(unpacked, bits), list(weight.shape)), unpacked)


def test_a_weight_off_the_grid_is_refused(weight) -> None:
    with pytest.raises(SpeechkitError, match="not on a grid of 4 levels"):
        pack_int(weight, 2)


@pytest.mark.parametrize("fmt, granularity, group_size", [
    ("e4m3", "channel", None), ("e5m2", "tensor", None), ("e4m3", "none", None), ("e2m1", "group", 16),
])
def test_minifloat_weights_unpack_bit_for_bit(weight, fmt: str, granularity: str, group_size) -> None:
    quantized = fake_quant_float(weight * 3, fmt, granularity, group_size)
    packed = pack_minifloat(quantized, fmt, granularity, group_size)
    assert torch.equal(unpack_minifloat(packed, list(weight.shape), fmt, granularity, group_size), quantized)
    assert packed["codes"].numel() == weight.numel() * minifloat_code_bits(fmt) // 8
    assert minifloat_code_bits(fmt) == {"e4m3": 8, "e5m2": 8, "e2m1": 4}[fmt]


def test_sparse_weights_keep_their_values_and_a_bitmask(weight) -> None:
    pruned = magnitude_prune(weight, 0.75)
    packed = pack_sparse(pruned)
    assert torch.equal(unpack_sparse(packed, list(weight.shape)), pruned)
    assert nbytes(packed) == 4 * weight.numel() // 4 + weight.numel() // 8  # float32 nonzeros + 1 bit per entry


def test_a_state_dict_round_trips_with_its_stored_layouts(weight) -> None:
    bits = torch.tensor([2, 4] * 32)
    baq = torch.cat([quantize_rtn(weight[:, bits == b], int(b)) for b in (2, 4)], dim=1)
    order = torch.cat([torch.nonzero(bits == b).flatten() for b in (2, 4)])
    columns = torch.empty_like(baq)
    columns[:, order] = baq
    state = {"a.weight": quantize_rtn(weight, 3, 16), "b.weight": magnitude_prune(weight, 0.5),
             "c.weight": fake_quant_float(weight, "e2m1", "group", 32), "d.weight": columns, "bias": weight[0]}
    layouts = {"a.weight": {"kind": "int", "shape": [48, 64], "bits": 3, "group_size": 16},
               "b.weight": {"kind": "sparse", "shape": [48, 64]},
               "c.weight": {"kind": "minifloat", "shape": [48, 64], "format": "e2m1", "granularity": "group",
                            "group_size": 32},
               "d.weight": {"kind": "int", "shape": [48, 64], "column_bits": bits}}
    packed = pack_state_dict(state, layouts)
    assert "a.weight" not in packed and torch.equal(packed["bias"], state["bias"])
    stored = {name: stored_layout(layout) for name, layout in layouts.items()}
    assert stored["d.weight"]["column_bits"] is True
    unpacked = unpack_state_dict(packed, stored)
    assert unpacked.keys() == state.keys()
    assert all(torch.equal(unpacked[name], state[name]) for name in state)
