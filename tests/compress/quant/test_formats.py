import pytest
import torch

from speechkit.compress.quant.formats import (
    FORMATS,
    fake_quant_float,
    fake_quant_int,
    int_scale_zero,
    mask_float,
    round_to_minifloat,
)
from speechkit.errors import SpeechkitError


def _grid(fmt: str) -> torch.Tensor:
    """Every non-negative value of a minifloat, enumerated from its bit fields."""
    spec = FORMATS[fmt]
    values = []
    for e in range(2**spec.exp_bits):
        for m in range(2**spec.man_bits):
            if e == 0:
                v = m / 2**spec.man_bits * 2.0 ** (1 - spec.bias)
            else:
                v = (1 + m / 2**spec.man_bits) * 2.0 ** (e - spec.bias)
            if v <= spec.max_value:
                values.append(v)
    return torch.tensor(sorted(set(values)))


def test_e2m1_grid_is_the_ocp_fp4_grid() -> None:
    assert _grid("e2m1").tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert round_to_minifloat(torch.tensor([2.6, -2.6, 5.0, 7.0, 100.0]), "e2m1").tolist() == [3, -3, 4, 6, 6]


@pytest.mark.parametrize("fmt,maximum", [("e4m3", 448.0), ("e5m2", 57344.0), ("e2m1", 6.0)])
def test_representable_values_round_trip_and_maximum(fmt: str, maximum: float) -> None:
    grid = _grid(fmt)
    assert grid.max().item() == maximum
    values = torch.cat([grid, -grid])
    assert torch.equal(round_to_minifloat(values, fmt), values)
    assert round_to_minifloat(torch.tensor([maximum * 10]), fmt).item() == maximum  # saturates


@pytest.mark.parametrize("fmt,dtype", [("e4m3", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)])
def test_fp8_rounding_matches_torch_casts(fmt: str, dtype: torch.dtype) -> None:
    x = torch.randn(20000, generator=torch.Generator().manual_seed(1)) * 30
    x = x.clamp(-FORMATS[fmt].max_value, FORMATS[fmt].max_value)
    assert torch.equal(round_to_minifloat(x, fmt), x.to(dtype).float())


def test_stochastic_rounding_is_unbiased() -> None:
    x = torch.full((100000,), 2.6)
    q = round_to_minifloat(x, "e2m1", rounding="stochastic", generator=torch.Generator().manual_seed(0))
    assert set(q.unique().tolist()) == {2.0, 3.0}
    assert abs(q.mean().item() - 2.6) < 3e-3


def test_scaled_float_maps_each_row_max_to_the_format_max() -> None:
    w = torch.tensor([[1.0, -12.0, 3.0, 0.5], [0.1, 0.2, 0.3, 0.4]])
    q = fake_quant_float(w, "e2m1", granularity="channel")
    assert q[0].tolist() == [1.0, -12.0, 3.0, 0.0]  # scale 2: 0.5/2 = 0.25 is a tie between 0 and 0.5 -> even 0
    assert q[1, 3].item() == pytest.approx(0.4)


def test_int_symmetric_grid_and_exact_values() -> None:
    x = torch.tensor([[-1.0, -0.5, 0.0, 0.25, 1.0]])
    scale, zero = int_scale_zero(x, 3, symmetric=True)
    assert scale.item() == pytest.approx(1 / 3) and zero.item() == 0
    assert fake_quant_int(x, 3, symmetric=True)[0].tolist() == pytest.approx([-1.0, -2 / 3, 0.0, 1 / 3, 1.0])
    on_grid = torch.tensor([[-6.0, -3.0, 0.0, 3.0, 9.0]])  # asymmetric 4 bits: range [-6, 9] / 15 = 1
    assert torch.equal(fake_quant_int(on_grid, 4, symmetric=False), on_grid)


def test_int_group_equals_channel_when_group_is_the_row_and_error_shrinks_with_groups() -> None:
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(2))
    one_group = fake_quant_int(w, 4, granularity="group", group_size=64)
    assert torch.equal(one_group, fake_quant_int(w, 4, granularity="channel"))
    errors = [
        (fake_quant_int(w, 3, granularity=g, group_size=s) - w).pow(2).mean().item()
        for g, s in [("tensor", None), ("channel", None), ("group", 16), ("group", 4)]
    ]
    assert errors == sorted(errors, reverse=True)


def test_mask_float_bf16_identity_significant_bits_and_saturation() -> None:
    x = torch.randn(10000, generator=torch.Generator().manual_seed(3)) * 1e3
    truncated = (x.view(torch.int32) & ~0xFFFF).view(torch.float32)  # bfloat16 truncation, by hand
    assert torch.equal(mask_float(x, exp_bits=8, man_bits=7), truncated)
    assert torch.equal(mask_float(x, exp_bits=8, man_bits=7, rounding="rne"), x.to(torch.bfloat16).float())
    assert torch.equal(mask_float(x, 8, 23), x)
    m = 3
    mantissa, _ = torch.frexp(mask_float(x, 8, m))
    assert torch.equal(mantissa * 2 ** (m + 1), torch.round(mantissa * 2 ** (m + 1)))
    assert mask_float(torch.tensor([2.0**20]), exp_bits=5, man_bits=2).item() == 2.0**15 * (2 - 2.0**-2)
    rne = mask_float(torch.tensor([1.0 + 3 * 2.0**-4]), exp_bits=8, man_bits=2, rounding="rne")
    assert rne.item() == 1.25  # 1.1875 -> nearest 2-bit mantissa value is 1.25 (truncation gives 1.0)
    assert mask_float(torch.tensor([1e-3]), exp_bits=4, man_bits=3, subnormals=False).item() == 0.0


@pytest.mark.parametrize("bits", [1, 17, 4.0])
def test_bad_bits_name_the_argument(bits: object) -> None:
    with pytest.raises(SpeechkitError, match="bits"):
        fake_quant_int(torch.ones(2, 4), bits)  # type: ignore[arg-type]


def test_group_size_must_divide_the_row() -> None:
    with pytest.raises(SpeechkitError, match="group_size"):
        fake_quant_int(torch.ones(2, 6), 4, granularity="group", group_size=4)
