import pytest
import torch

from speechkit.compress.quant.gptq import gptq, gptq_baq, gptq_with_losses
from speechkit.compress.quant.rtn import quantize_rtn
from speechkit.errors import SpeechkitError


def _output_error(w: torch.Tensor, q: torch.Tensor, x: torch.Tensor) -> float:
    return torch.linalg.norm(x @ w.T - x @ q.T).item()


@pytest.mark.parametrize("bits,group_size", [(3, None), (4, None), (4, 16), (8, None)])
def test_gptq_output_error_below_round_to_nearest(correlated_layer, bits: int, group_size: int | None) -> None:
    w, x = correlated_layer
    rtn_error = _output_error(w, quantize_rtn(w, bits, group_size), x)
    gptq_error = _output_error(w, gptq(w, x, bits, group_size, blocksize=16), x)
    assert gptq_error < 0.8 * rtn_error


def test_gptq_values_lie_on_a_grid_of_2_to_the_bits_levels_per_group(correlated_layer) -> None:
    w, x = correlated_layer
    q = gptq(w, x, bits=3, group_size=16)
    for row in q.reshape(-1, 16):  # each row-group has one 3-bit grid
        assert row.unique().numel() <= 8


def test_gptq_with_identity_hessian_and_no_damping_equals_rtn() -> None:
    w = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    x = torch.eye(8) * 2**-0.5 * 8**0.5  # 2 X^T X / n = I: OBS updates vanish, GPTQ is RTN
    assert torch.allclose(gptq(w, x, bits=4, percdamp=0.0), quantize_rtn(w, bits=4), atol=1e-6)


def test_per_column_bits_and_losses() -> None:
    w = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    bits = torch.tensor([2, 2, 3, 3, 4, 4, 8, 8])
    q, losses = gptq_with_losses(w, x, bits)
    assert losses.shape == (8,) and bool((losses >= 0).all())
    low, high = w.amin(dim=1).clamp(max=0), w.amax(dim=1).clamp(min=0)  # one range per row (BAQ)
    for j, b in enumerate(bits.tolist()):
        scale = (high - low) / (2**b - 1)
        codes = q[:, j] / scale + torch.round(-low / scale)
        assert torch.allclose(codes, codes.round(), atol=1e-3) and codes.min() > -0.5 and codes.max() < 2**b - 0.5


def test_bad_arguments_name_themselves() -> None:
    w, x = torch.randn(4, 6), torch.randn(10, 6)
    with pytest.raises(SpeechkitError, match="bits"):
        gptq(w, x, bits=1)
    with pytest.raises(SpeechkitError, match="group_size"):
        gptq(w, x, bits=4, group_size=4)
    with pytest.raises(SpeechkitError, match="inputs"):
        gptq(w, torch.randn(10, 5), bits=4)
    with pytest.raises(SpeechkitError, match="bits"):
        quantize_rtn(w, bits=17)


def test_baq_beats_uniform_gptq_on_anisotropic_inputs() -> None:
    g = torch.Generator().manual_seed(5)
    scales = 10 ** torch.empty(64).uniform_(0, 3, generator=g)  # column scales log-uniform over 10^3
    x = torch.randn(256, 64, generator=g) * scales
    w = torch.randn(32, 64, generator=g)
    q_baq, bits = gptq_baq(w, x, avg_bits=3)
    assert bits.sum().item() == 3 * 64  # the budget is met exactly
    uniform = gptq(w, x, bits=3, blocksize=1)
    assert _output_error(w, q_baq, x) < 0.5 * _output_error(w, uniform, x)  # measured: about 4x lower
