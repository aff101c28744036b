"""GPTQ: column-by-column quantization with Optimal-Brain-Surgeon error compensation.

Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers" (2023), Alg. 1:
with the layer-input Hessian ``H = 2 X^T X`` (damped by ``percdamp * mean(diag H)``) and ``U = chol(H^-1)^T``
(upper), column j is quantized and the error ``(w_j - q_j) / U_jj`` is spread over the columns not yet quantized
by ``U_{j, j:}``. The per-column loss ``L_j = 1/2 * sum_rows (w_ij - q_ij)^2 / U_jj^2`` is what BAQ (Zhang et al.
2025) allocates bits from. SparseGPT reuses ``layer_input_hessian`` and ``inverse_hessian_cholesky``.

No library ships a model-agnostic GPTQ core that takes a weight and inputs (optimum/auto-gptq wrap whole HF
models and need a GPU kernel package), so the loop is written here after the reference ``gptq.py``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from speechkit.compress.quant.formats import check_bits, check_group_size, int_quantize, int_scale_zero
from speechkit.errors import SpeechkitError


def layer_input_hessian(inputs: Tensor) -> Tensor:
    """``H = 2 X^T X / n`` of calibration inputs ``X`` ``(n, in)`` (any leading dims are flattened); ``(in, in)``."""
    x = inputs.reshape(-1, inputs.shape[-1]).double()  # (n, in)
    if x.shape[0] == 0:
        raise SpeechkitError("inputs must hold at least one calibration row, got 0")
    return 2.0 * x.T @ x / x.shape[0]


class HessianAccumulator:
    """Running ``H = 2 X^T X / n`` of a layer's inputs, so calibration never has to hold all of ``X``."""

    def __init__(self, features: int) -> None:
        self.features, self.rows = features, 0
        self.total = torch.zeros(features, features, dtype=torch.float64)

    def add(self, inputs: Tensor) -> None:
        x = inputs.detach().reshape(-1, inputs.shape[-1]).double().cpu()  # (n, in)
        if x.shape[1] != self.features:
            raise SpeechkitError(f"inputs must have {self.features} features, got {x.shape[1]}")
        self.total += x.T @ x
        self.rows += x.shape[0]

    @property
    def hessian(self) -> Tensor:
        if self.rows == 0:
            raise SpeechkitError("inputs: the Hessian accumulator has seen no calibration rows")
        return 2.0 * self.total / self.rows


Inputs = Tensor | HessianAccumulator  # calibration inputs (n, in), or their accumulated Hessian


def hessian_of(weight: Tensor, inputs: Inputs) -> Tensor:
    """The layer-input Hessian of ``inputs`` after checking it fits ``weight`` ``(out, in)``."""
    if weight.dim() != 2:
        raise SpeechkitError(f"weight must be 2-D (out, in), got shape {tuple(weight.shape)}")
    features = inputs.features if isinstance(inputs, HessianAccumulator) else inputs.shape[-1]
    if features != weight.shape[1]:
        raise SpeechkitError(f"inputs must have {weight.shape[1]} features (weight's in), got {features}")
    return inputs.hessian if isinstance(inputs, HessianAccumulator) else layer_input_hessian(inputs)


def inverse_hessian_cholesky(hessian: Tensor, weight: Tensor, percdamp: float = 0.01) -> Tensor:
    """Upper Cholesky factor of the damped inverse Hessian; zeroes ``weight`` columns of dead inputs in place.

    Args:
        hessian: ``(in, in)``, modified copy only.
        weight: ``(out, in)`` float working copy; columns whose input is always 0 are set to 0 (as GPTQ does).
        percdamp: damping as a fraction of the mean diagonal.

    Returns:
        ``U`` ``(in, in)`` upper triangular with ``U^T U = (H + damp I)^-1``.
    """
    if not 0 <= percdamp < 1:
        raise SpeechkitError(f"percdamp must be in [0, 1), got {percdamp}")
    h = hessian.clone().double()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    weight[:, dead] = 0
    idx = torch.arange(h.shape[0])
    h[idx, idx] += percdamp * torch.mean(torch.diag(h))
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(hinv, upper=True)


# (column (out,), its index j, live() -> the updated columns j, j+1, ... (out, in - j)) -> dequantized column
ColumnQuantizer = Callable[[Tensor, int, Callable[[], Tensor]], Tensor]


def obs_quantize(weight: Tensor, u: Tensor, quantize_column: ColumnQuantizer,
                 blocksize: int = 128) -> tuple[Tensor, Tensor]:
    """GPTQ's lazy-batch OBS loop with any column quantizer; returns the new weight and per-column losses.

    Args:
        weight: ``(out, in)`` float64 working copy (consumed).
        u: upper Cholesky factor of the inverse Hessian, ``(in, in)``.
        quantize_column: maps column ``j`` of the *updated* weight to its quantized value; its third argument
            returns the updated columns from ``j`` on (for fitting a group's grid when the group starts).
        blocksize: columns updated together before the lazy block update.

    Returns:
        ``(q, losses)``: ``(out, in)`` quantized weight and ``(in,)`` losses ``1/2 sum (w - q)^2 / U_jj^2``.
    """
    cols = weight.shape[1]
    q = torch.zeros_like(weight)
    losses = torch.zeros(cols, dtype=weight.dtype)
    for start in range(0, cols, blocksize):
        end = min(start + blocksize, cols)
        block, u_block = weight[:, start:end].clone(), u[start:end, start:end]
        err = torch.zeros_like(block)
        for i in range(end - start):
            w, d = block[:, i], u_block[i, i]
            qc = quantize_column(w, start + i, lambda: torch.cat([block[:, i:], weight[:, end:]], dim=1))
            q[:, start + i] = qc
            losses[start + i] = 0.5 * torch.sum((w - qc) ** 2) / d**2
            e = (w - qc) / d
            block[:, i:] -= e.unsqueeze(1) @ u_block[i, i:].unsqueeze(0)
            err[:, i] = e
        weight[:, end:] -= err @ u[start:end, end:]
    return q, losses


def gptq_with_losses(
    weight: Tensor,
    inputs: Inputs,
    bits: int | Tensor,
    group_size: int | None = None,
    symmetric: bool = False,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> tuple[Tensor, Tensor]:
    """GPTQ returning the dequantized weight and the per-column OBS losses (BAQ's sensitivity ``c_j``).

    ``bits`` may be a ``(in,)`` integer tensor of bits per column (BAQ's mixed precision; each column then has its
    row range, fitted once, with ``2^b_j`` levels), otherwise one width for all columns with
    one grid per row or per ``group_size`` columns, fitted when the group starts (GPTQ's ``groupsize``).
    """
    hessian = hessian_of(weight, inputs)
    w = weight.detach().double().clone()
    u = inverse_hessian_cholesky(hessian, w, percdamp)
    if isinstance(bits, Tensor):
        if bits.shape != (w.shape[1],):
            raise SpeechkitError(f"bits per column must have shape ({w.shape[1]},), got {tuple(bits.shape)}")
        per_col = [check_bits(int(b), "bits") for b in bits.tolist()]
        row_range = w.abs().amax(dim=1) if symmetric else w.amax(dim=1).clamp(min=0) - w.amin(dim=1).clamp(max=0)
        row_low = w.amin(dim=1, keepdim=True).clamp(max=0)  # (out, 1)

        def quantize_column(col: Tensor, j: int, live: Callable[[], Tensor]) -> Tensor:
            # one min/max range per row, 2^b_j levels for column j (BAQ)
            levels = 2 ** (per_col[j] - 1) - 1 if symmetric else 2 ** per_col[j] - 1
            scale = (row_range / levels).clamp(min=1e-12).unsqueeze(1)  # (out, 1)
            zero = torch.zeros_like(scale) if symmetric else torch.round(-row_low / scale)
            return int_quantize(col.unsqueeze(1), scale, zero, per_col[j], symmetric).squeeze(1)

    else:
        check_bits(bits)
        size = check_group_size(group_size, w.shape[1])
        grid: dict[str, Tensor] = {}

        def quantize_column(col: Tensor, j: int, live: Callable[[], Tensor]) -> Tensor:
            if j % size == 0:  # fit the group's grid on the weights as updated so far
                grid["scale"], grid["zero"] = int_scale_zero(live()[:, :size], bits, symmetric)
            return int_quantize(col.unsqueeze(1), grid["scale"], grid["zero"], bits, symmetric).squeeze(1)


    q, losses = obs_quantize(w, u, quantize_column, blocksize)
    return q.to(weight.dtype), losses.float()


def gptq(
    weight: Tensor,
    inputs: Inputs,
    bits: int,
    group_size: int | None = None,
    symmetric: bool = False,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> Tensor:
    """Quantize a linear weight with GPTQ on calibration inputs and return the dequantized weight.

    Args:
        weight: ``(out, in)``.
        inputs: calibration inputs to the layer, ``(n, in)`` (leading dims flattened), or a
            ``HessianAccumulator`` of them.
        bits: bit width in [2, 16].
        group_size: columns sharing one grid per row; ``None`` / -1 = whole row. Must divide ``in``.
        symmetric: symmetric grid instead of the asymmetric min/max grid.
        blocksize: lazy-batch block width.
        percdamp: Hessian damping as a fraction of its mean diagonal.

    Returns:
        ``(out, in)`` dequantized weight, same dtype as ``weight``.
    """
    return gptq_with_losses(weight, inputs, bits, group_size, symmetric, blocksize, percdamp)[0]


def gptq_baq(
    weight: Tensor,
    inputs: Inputs,
    avg_bits: float,
    choices: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8),
    theta: float = 2.0,
    symmetric: bool = False,
    percdamp: float = 0.01,
) -> tuple[Tensor, Tensor]:
    """BAQ's two passes (Zhang et al. 2025): GPTQ at ``avg_bits`` records column losses ``L_j``, the loss model
    ``c_j = L_j 2^(theta R_ref)`` feeds ``allocate_bits(method="baq")``, and GPTQ runs again with those bits.

    BAQ allows fractional bits (integer numbers of levels); here widths are whole bits from ``choices`` [D].
    ``avg_bits`` must be a whole number (the uniform reference pass). Returns the dequantized weight and the
    ``(in,)`` bits per column.
    """
    from speechkit.compress.quant.allocate import allocate_bits

    if float(avg_bits) != int(avg_bits):
        raise SpeechkitError(f"avg_bits must be a whole number of bits for the reference pass, got {avg_bits}")
    _, losses = gptq_with_losses(weight, inputs, int(avg_bits), symmetric=symmetric, blocksize=1, percdamp=percdamp)
    sensitivity = losses.double().clamp_min(1e-30) * 2.0 ** (theta * avg_bits)
    bits = allocate_bits(sensitivity, None, float(avg_bits), method="baq", choices=choices, theta=theta)
    q, _ = gptq_with_losses(weight, inputs, bits, symmetric=symmetric, blocksize=1, percdamp=percdamp)
    return q, bits


def collect_hessians(model: nn.Module, targets: str | Sequence[str],
                     calibrate: Callable[[nn.Module], None]) -> dict[str, HessianAccumulator]:
    """Run ``calibrate(model)`` (forward passes over calibration data), accumulating each matched Linear's input
    Hessian."""
    from speechkit.compress.prune.masks import find_linears

    linears = find_linears(model, targets)
    hessians = {name: HessianAccumulator(m.in_features) for name, m in linears.items()}
    handles = [m.register_forward_pre_hook(lambda _, args, n=name: hessians[n].add(args[0]))
               for name, m in linears.items()]
    try:
        with torch.no_grad():
            calibrate(model)
    finally:
        for handle in handles:
            handle.remove()
    return hessians


def compress_linears(
    model: nn.Module,
    targets: str | Sequence[str],
    calibrate: Callable[[nn.Module], None],
    compress: Callable[[Tensor, HessianAccumulator], Tensor],
    sequential: bool = True,
) -> list[str]:
    """Replace the weight of every matched ``nn.Linear`` by ``compress(weight, hessian)``, in model order.

    ``compress`` is e.g. ``lambda w, h: gptq(w, h, 4, 128)`` or ``lambda w, h: sparsegpt(w, h, 0.5)``. With
    ``sequential`` (GPTQ / SparseGPT practice) each layer's inputs are collected after the layers before it were
    compressed (one calibration pass per layer); otherwise all from the original model in one pass.
    """
    from speechkit.compress.prune.masks import find_linears

    names = list(find_linears(model, targets))
    shared = None if sequential else collect_hessians(model, names, calibrate)
    for name in names:
        hessian = collect_hessians(model, [name], calibrate)[name] if shared is None else shared[name]
        linear = model.get_submodule(name)
        with torch.no_grad():
            linear.weight.copy_(compress(linear.weight.detach(), hessian))
    return names
