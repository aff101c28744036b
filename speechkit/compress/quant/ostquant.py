"""OSTQuant: learnable orthogonal and scaling transforms around quantized linear layers (Hu et al., ICLR 2025,
"OSTQuant: Refining Large Language Model Quantization with Orthogonal and Scaling Transformations").

For a linear layer ``y = x W^T``: ``y = (x O S)(W O S^-1)^T`` for any orthogonal ``O`` and positive diagonal ``S``,
so activations are quantized after ``x -> x O S`` and weights after ``W -> W O S^-1``; the pair is fused into the
preceding linear layer (``W_prev -> S O^T W_prev``) at the end. ``O`` is learned through an unconstrained
parametrisation that stays exactly orthogonal - Cayley ``O = O_0 (I + A)^-1 (I - A)`` or ``O = O_0 exp(A)``, ``A``
skew-symmetric - instead of the paper's Riemannian Adam on the Stiefel manifold; ``S = exp(log_s)``. The
transforms are trained on calibration data with the KL-Top loss (``speechkit.losses.kl_top``) between the
full-precision and the quantized model's logits, with straight-through rounding.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Literal, Sequence

import torch
from torch import Tensor, nn

from speechkit.compress.quant.formats import check_bits, fake_quant_int
from speechkit.compress.quant.rtn import quantize_rtn
from speechkit.errors import SpeechkitError

Parametrisation = Literal["cayley", "exp"]


def random_orthogonal(dim: int, generator: torch.Generator | None = None) -> Tensor:
    """A Haar-random orthogonal ``(dim, dim)`` matrix (QR of a Gaussian with sign-corrected R)."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()


class LearnableOrthogonal(nn.Module):
    """``O = O_0 Q(A)`` with ``A = P - P^T`` skew-symmetric, ``Q`` Cayley or matrix exponential; ``O = O_0`` at
    start."""

    def __init__(self, dim: int, parametrisation: Parametrisation = "cayley", init: Tensor | None = None) -> None:
        super().__init__()
        if parametrisation not in ("cayley", "exp"):
            raise SpeechkitError(f"parametrisation must be 'cayley' or 'exp', got {parametrisation!r}")
        if init is not None and init.shape != (dim, dim):
            raise SpeechkitError(f"init must be ({dim}, {dim}), got {tuple(init.shape)}")
        self.parametrisation = parametrisation
        self.generator = nn.Parameter(torch.zeros(dim, dim))
        self.register_buffer("base", torch.eye(dim) if init is None else init.float().clone())

    def forward(self) -> Tensor:
        skew = self.generator - self.generator.T
        if self.parametrisation == "exp":
            return self.base @ torch.linalg.matrix_exp(skew)
        eye = torch.eye(skew.shape[0], dtype=skew.dtype, device=skew.device)
        return self.base @ torch.linalg.solve(eye + skew, eye - skew)


class OrthoScale(nn.Module):
    """One equivalent-transformation pair ``x -> x O S``, ``W -> W O S^-1`` over ``dim`` channels."""

    def __init__(self, dim: int, learn_rotation: bool = True, learn_scale: bool = True,
                 parametrisation: Parametrisation = "cayley", init_rotation: Tensor | None = None) -> None:
        super().__init__()
        self.rotation = LearnableOrthogonal(dim, parametrisation, init_rotation)
        self.rotation.generator.requires_grad_(learn_rotation)
        self.log_scale = nn.Parameter(torch.zeros(dim), requires_grad=learn_scale)

    def transform_activation(self, x: Tensor) -> Tensor:  # (..., dim)
        return (x @ self.rotation()) * torch.exp(self.log_scale)

    def transform_weight(self, weight: Tensor) -> Tensor:  # (out, dim) of a layer reading the transformed x
        return (weight @ self.rotation()) * torch.exp(-self.log_scale)

    @torch.no_grad()
    def fuse_into_previous(self, previous: nn.Linear) -> None:
        """Make ``previous`` output ``x O S`` instead of ``x``: ``W -> S O^T W``, ``b -> (b O) S``."""
        o, s = self.rotation(), torch.exp(self.log_scale)
        previous.weight.copy_(s[:, None] * (o.T @ previous.weight))
        if previous.bias is not None:
            previous.bias.copy_((previous.bias @ o) * s)


def _ste(x: Tensor, quantized: Tensor) -> Tensor:
    """Straight-through estimator: forward ``quantized``, backward identity."""
    return x + (quantized - x).detach()


class OstQuantLinear(nn.Module):
    """A linear layer whose input goes through ``transform`` and whose weight and input are fake-quantized.

    Args:
        linear: the full-precision layer (its weight stays frozen).
        transform: the ``OrthoScale`` shared by all layers reading the same input (q/k/v, up/gate).
        weight_bits: RTN bits of the transformed weight (asymmetric per row, or per ``group_size``).
        act_bits: per-token asymmetric activation bits, ``None`` = full-precision activations.
        group_size: weight group size.
    """

    def __init__(self, linear: nn.Linear, transform: OrthoScale, weight_bits: int = 4, act_bits: int | None = None,
                 group_size: int | None = None) -> None:
        super().__init__()
        check_bits(weight_bits, "weight_bits")
        if act_bits is not None:
            check_bits(act_bits, "act_bits")
        self.linear, self.transform = linear, transform
        self.weight_bits, self.act_bits, self.group_size = weight_bits, act_bits, group_size
        self.linear.requires_grad_(False)

    def quantized_weight(self) -> Tensor:
        w = self.transform.transform_weight(self.linear.weight)
        return _ste(w, quantize_rtn(w.detach(), self.weight_bits, self.group_size))

    def forward(self, x: Tensor) -> Tensor:
        x = self.transform.transform_activation(x)
        if self.act_bits is not None:
            flat = x.reshape(-1, x.shape[-1])
            q = fake_quant_int(flat.detach(), self.act_bits, symmetric=False, granularity="channel")  # per token
            x = _ste(x, q.reshape(x.shape))
        out = x @ self.quantized_weight().T
        return out if self.linear.bias is None else out + self.linear.bias

    @torch.no_grad()
    def folded(self) -> nn.Linear:
        """Plain ``nn.Linear`` holding the quantized transformed weight; its input must be ``x O S``."""
        new = nn.Linear(self.linear.in_features, self.linear.out_features, bias=self.linear.bias is not None)
        new.weight.copy_(self.quantized_weight())
        if self.linear.bias is not None:
            new.bias.copy_(self.linear.bias)
        return new


def train_transforms(
    quantized_logits: Callable[[Any], Tensor],
    batches: Sequence[Any],
    teacher_logits: Sequence[Tensor],
    params: Iterable[nn.Parameter],
    steps: int = 100,
    lr: float = 1e-2,
    k: int = 1000,
    temperature: float = 1.0,
) -> list[float]:
    """Fit the transform parameters with KL-Top between full-precision and quantized logits (Adam).

    Args:
        quantized_logits: ``batch -> logits (..., V)`` of the model with ``OstQuantLinear`` layers.
        batches: calibration batches, cycled.
        teacher_logits: full-precision logits for each batch (same order).
        params: the transform parameters (``OrthoScale.parameters()``).
        steps: optimizer steps.
        lr: Adam learning rate.
        k: KL-Top classes (clipped to V).
        temperature: softmax temperature.

    Returns:
        The loss at every step.
    """
    from speechkit.losses.kl_top import kl_top

    if len(batches) != len(teacher_logits) or not batches:
        raise SpeechkitError(f"batches ({len(batches)}) and teacher_logits ({len(teacher_logits)}) must pair up")
    params = [p for p in params if p.requires_grad]
    if not params:
        raise SpeechkitError("params must hold at least one trainable transform parameter")
    optimizer = torch.optim.Adam(params, lr=lr)
    history = []
    for step in range(steps):
        i = step % len(batches)
        optimizer.zero_grad()
        loss = kl_top(quantized_logits(batches[i]), teacher_logits[i], k, temperature)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    return history
