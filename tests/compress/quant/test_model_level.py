import pytest
import torch
from torch import nn

from speechkit.compress.prune.magnitude import magnitude_prune
from speechkit.compress.prune.sparsegpt import sparsegpt
from speechkit.compress.quant.formats import FakeQuantLinear, fake_quant_float, mask_float
from speechkit.compress.quant.gptq import (
    HessianAccumulator,
    collect_hessians,
    compress_linears,
    gptq,
    layer_input_hessian,
)
from speechkit.compress.quant.rtn import quantize_rtn, quantize_weights
from speechkit.errors import SpeechkitError


def _model_and_data() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 8))
    x = torch.randn(256, 8) @ torch.randn(8, 32) + 0.05 * torch.randn(256, 32)  # low-rank, correlated inputs
    return model, x


def test_accumulated_hessian_equals_the_direct_one() -> None:
    x = torch.randn(100, 6)
    acc = HessianAccumulator(6)
    acc.add(x[:30])
    acc.add(x[30:].reshape(7, 10, 6))
    assert torch.allclose(acc.hessian, layer_input_hessian(x))
    w = torch.randn(4, 6)
    assert torch.allclose(gptq(w, acc, 3), gptq(w, x, 3))


@pytest.mark.parametrize("sequential", [True, False])
def test_model_level_gptq_and_sparsegpt_beat_rtn_and_magnitude(sequential: bool) -> None:
    model, x = _model_and_data()
    reference = model(x).detach()

    def error(compress) -> float:  # noqa: ANN001
        m, _ = _model_and_data()
        compress(m)
        return (m(x) - reference).pow(2).mean().item()

    calibrate = lambda m: m(x)  # noqa: E731
    gptq_error = error(lambda m: compress_linears(m, "*", calibrate, lambda w, h: gptq(w, h, 3, 16), sequential))
    rtn_error = error(lambda m: quantize_weights(m, "*", lambda w: quantize_rtn(w, 3, 16)))
    assert gptq_error < 0.7 * rtn_error
    sparse_error = error(lambda m: compress_linears(m, "*", calibrate, lambda w, h: sparsegpt(w, h, 0.5), sequential))
    magnitude_error = error(lambda m: quantize_weights(m, "*", lambda w: magnitude_prune(w, 0.5)))
    assert sparse_error < 0.7 * magnitude_error


def test_collect_hessians_sees_the_layer_inputs() -> None:
    model, x = _model_and_data()
    hessians = collect_hessians(model, ["0"], lambda m: m(x))
    assert torch.allclose(hessians["0"].hessian, layer_input_hessian(x))
    with pytest.raises(SpeechkitError, match="decoder"):
        collect_hessians(model, ["decoder.*"], lambda m: m(x))


def test_fake_quant_linear_forward_and_straight_through_gradient() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(8, 4)
    wrapped = FakeQuantLinear(linear, weight_fn=lambda w: fake_quant_float(w, "e4m3", "channel"),
                              input_fn=lambda x: mask_float(x, exp_bits=4, man_bits=3))
    x = torch.randn(5, 8, requires_grad=True)
    w_q = fake_quant_float(linear.weight.detach(), "e4m3", "channel")
    expected = mask_float(x.detach(), 4, 3) @ w_q.T + linear.bias
    out = wrapped(x)
    assert torch.allclose(out, expected, atol=1e-6)
    out.sum().backward()
    assert torch.allclose(x.grad, w_q.sum(0).expand(5, 8))  # STE through the input rounding: d/dx of x W_q^T
    assert linear.weight.grad is not None
