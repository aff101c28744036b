"""SparseGPT: one-shot unstructured pruning with Optimal-Brain-Surgeon weight reconstruction.

Frantar & Alistarh, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot" (2023), Alg. 1:
with ``U = chol((2 X^T X + damp I)^-1)^T``, the mask of each block of ``blocksize`` columns prunes the
``sparsity`` fraction with the smallest saliency ``w^2 / U_jj^2``; column by column, pruned weights are set to 0
and the error ``w_j / U_jj`` is compensated on the remaining columns by ``U_{j, j:}`` (the same OBS loop as
GPTQ, shared through ``speechkit.compress.quant.gptq.obs_quantize``). Used by Kurtic et al. 2023 (SquareHead)
as the one-shot starting point for sparse fine-tuning.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from speechkit.compress.prune.magnitude import check_sparsity, smallest_mask
from speechkit.compress.quant.gptq import Inputs, hessian_of, inverse_hessian_cholesky, obs_quantize
from speechkit.errors import SpeechkitError


def sparsegpt(
    weight: Tensor,
    inputs: Inputs,
    sparsity: float,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> Tensor:
    """Prune ``weight`` to ``sparsity`` (per block of columns) and reconstruct the rest on calibration inputs.

    Args:
        weight: ``(out, in)`` linear weight.
        inputs: calibration inputs to the layer, ``(n, in)`` (leading dims flattened), or a
            ``HessianAccumulator`` of them.
        sparsity: fraction of weights set to 0 in every block of columns, in [0, 1).
        blocksize: columns whose mask is chosen together (the paper's adaptive mask selection block, 128).
        percdamp: Hessian damping as a fraction of its mean diagonal.

    Returns:
        The pruned and updated weight, ``(out, in)``, same dtype; ``int(sparsity * out * width)`` zeros per block.
    """
    check_sparsity(sparsity)
    hessian = hessian_of(weight, inputs)
    if blocksize <= 0:
        raise SpeechkitError(f"blocksize must be positive, got {blocksize}")
    w = weight.detach().double().clone()
    u = inverse_hessian_cholesky(hessian, w, percdamp)
    d = torch.diag(u)  # (in,)
    pruned: dict[str, Tensor] = {}

    def prune_column(col: Tensor, j: int, live: Callable[[], Tensor]) -> Tensor:
        offset = j % blocksize
        if offset == 0:  # choose the mask of the whole block from the weights as updated so far
            block = live()[:, :blocksize]  # (out, width)
            pruned["mask"] = smallest_mask(block**2 / d[j : j + block.shape[1]] ** 2, sparsity)
        return torch.where(pruned["mask"][:, offset], torch.zeros_like(col), col)

    q, _ = obs_quantize(w, u, prune_column, blocksize)
    return q.to(weight.dtype)
