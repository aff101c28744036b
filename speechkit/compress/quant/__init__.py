"""Quantization: fake-quant number formats, round-to-nearest, GPTQ, bit allocation (BAQ, SNIP ILP, Q-BERT /
CPTQuant ranking) with its sensitivity scores, and OSTQuant's learnable orthogonal + scaling transforms."""

from speechkit.compress.quant.allocate import allocate_bits, baq_closed_form
from speechkit.compress.quant.formats import (
    FORMATS,
    FakeQuantLinear,
    Minifloat,
    check_bits,
    check_group_size,
    fake_quant_float,
    fake_quant_int,
    mask_float,
    round_to_minifloat,
)
from speechkit.compress.quant.gptq import (
    HessianAccumulator,
    collect_hessians,
    compress_linears,
    gptq,
    gptq_baq,
    gptq_with_losses,
    inverse_hessian_cholesky,
    layer_input_hessian,
)
from speechkit.compress.quant.ostquant import (
    LearnableOrthogonal,
    OrthoScale,
    OstQuantLinear,
    random_orthogonal,
    train_transforms,
)
from speechkit.compress.quant.rtn import quantize_rtn, quantize_weights
from speechkit.compress.quant.sensitivity import (
    canonical_correlations,
    cca_score,
    prune_score,
    qbert_omega,
    qbert_sensitivity,
    taylor_score,
)

__all__ = [
    "FORMATS",
    "FakeQuantLinear",
    "HessianAccumulator",
    "LearnableOrthogonal",
    "Minifloat",
    "OrthoScale",
    "OstQuantLinear",
    "allocate_bits",
    "baq_closed_form",
    "canonical_correlations",
    "cca_score",
    "check_bits",
    "check_group_size",
    "collect_hessians",
    "compress_linears",
    "fake_quant_float",
    "fake_quant_int",
    "gptq",
    "gptq_baq",
    "gptq_with_losses",
    "inverse_hessian_cholesky",
    "layer_input_hessian",
    "mask_float",
    "prune_score",
    "qbert_omega",
    "qbert_sensitivity",
    "quantize_rtn",
    "quantize_weights",
    "random_orthogonal",
    "round_to_minifloat",
    "taylor_score",
    "train_transforms",
]
