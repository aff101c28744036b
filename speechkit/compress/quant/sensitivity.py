"""Per-layer sensitivity scores that feed ``allocate_bits``: Q-BERT's Hessian spectrum and CPTQuant's three scores.

* Q-BERT (Shen et al., AAAI 2020): ``Omega_i = |mean(lambda_i)| + std(lambda_i)`` over mini-batches, with
  ``lambda_i`` the top Hessian eigenvalue of the loss w.r.t. layer i's parameters
  (``speechkit.curvature.top_eigenvalue``).
* CPTQuant (Nanda et al. 2024) - only the abstract is available, so the formulas are our interpretation [D]:
  CMPQ ``1 - mean canonical correlation`` between a layer's full-precision and quantized outputs; PMPQ the loss
  increase when the layer alone is magnitude-pruned; TDMPQ the first-order Taylor term ``E|dL/dx . delta|`` of a
  Gaussian input perturbation ``delta ~ N(0, sigma^2 Var(x))``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from speechkit.compress.prune.magnitude import magnitude_prune
from speechkit.compress.prune.masks import find_linears
from speechkit.errors import SpeechkitError


def qbert_omega(eigenvalues: Tensor) -> Tensor:
    """Q-BERT sensitivity ``|mean| + std`` over the last dim of ``(units, batches)`` top eigenvalues; ``(units,)``."""
    if eigenvalues.dim() != 2 or eigenvalues.shape[1] < 1:
        raise SpeechkitError(f"eigenvalues must be (units, batches), got shape {tuple(eigenvalues.shape)}")
    std = eigenvalues.std(dim=1, unbiased=False)
    return eigenvalues.mean(dim=1).abs() + std


def qbert_sensitivity(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], Tensor],
    batches: Iterable[Any],
    units: Sequence[str],
    iters: int = 20,
    tol: float = 1e-3,
    seed: int = 0,
) -> Tensor:
    """Omega of each unit: modules matched by the glob patterns ``units`` (one pattern = one unit of parameters).

    Args:
        model: the network.
        loss_fn: ``loss_fn(model, batch)`` -> scalar loss with its graph.
        batches: mini-batches (Q-BERT uses 10 % of the training data).
        units: glob patterns over module names; a unit's parameters are all parameters of the matched modules.
        iters, tol: power-iteration settings.
        seed: random start vector seed.
    """
    from speechkit.curvature import top_eigenvalue

    groups = [_unit_parameters(model, pattern) for pattern in units]
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for batch in batches:
        rows.append([top_eigenvalue(loss_fn(model, batch), params, iters, tol, generator) for params in groups])
    if not rows:
        raise SpeechkitError("batches must hold at least one batch")
    return qbert_omega(torch.tensor(rows, dtype=torch.float64).T)


def _unit_parameters(model: nn.Module, pattern: str) -> list[Tensor]:
    import fnmatch

    params = [p for name, m in model.named_modules() if fnmatch.fnmatchcase(name, pattern)
              for p in m.parameters() if p.requires_grad]
    if not params:
        raise SpeechkitError(f"units: pattern {pattern!r} matches no module with trainable parameters")
    return params


def canonical_correlations(a: Tensor, b: Tensor, eps: float = 1e-6) -> Tensor:
    """Canonical correlations of samples ``a`` ``(n, d1)`` and ``b`` ``(n, d2)``, descending, ``(min rank,)``."""
    if a.shape[0] != b.shape[0]:
        raise SpeechkitError(f"a and b must hold the same samples, got {a.shape[0]} and {b.shape[0]}")
    bases = []
    for x in (a, b):
        x = x.double() - x.double().mean(dim=0)
        u, s, _ = torch.linalg.svd(x, full_matrices=False)
        bases.append(u[:, s > eps * s.max().clamp(min=1e-300)])  # orthonormal basis of the column space
    return torch.linalg.svdvals(bases[0].T @ bases[1]).clamp(0, 1)


def cca_score(full_precision: Tensor, quantized: Tensor, k: int | None = None) -> float:
    """CMPQ [D]: ``1 - mean`` of the top-``k`` canonical correlations between two ``(n, d)`` activation sets."""
    rho = canonical_correlations(full_precision.reshape(-1, full_precision.shape[-1]),
                                 quantized.reshape(-1, quantized.shape[-1]))
    return float(1 - rho[: k or rho.numel()].mean())


@torch.no_grad()
def prune_score(model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], modules: Sequence[str],
                sparsity: float = 0.5) -> dict[str, float]:
    """PMPQ [D]: loss increase when each matched ``nn.Linear`` alone is magnitude-pruned to ``sparsity``."""
    base = float(loss_fn(model))
    scores = {}
    for name, linear in find_linears(model, modules).items():
        original = linear.weight.detach().clone()
        linear.weight.copy_(magnitude_prune(original, sparsity))
        scores[name] = float(loss_fn(model)) - base
        linear.weight.copy_(original)
    return scores


def taylor_score(model: nn.Module, loss_fn: Callable[[nn.Module], Tensor], modules: Sequence[str],
                 sigma: float = 0.1, n_probes: int = 8, seed: int = 0) -> dict[str, float]:
    """TDMPQ [D]: ``E|dL/dx . delta|`` at each matched Linear's input x, ``delta ~ N(0, sigma^2 Var(x))``."""
    linears = find_linears(model, modules)
    probes: dict[str, tuple[Tensor, Tensor]] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple[Tensor, ...]], tuple[Tensor, ...]]:
        def add_probe(_: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
            zero = torch.zeros_like(args[0], requires_grad=True)  # its gradient is dL/dx
            probes[name] = (args[0].detach(), zero)
            return (args[0] + zero, *args[1:])
        return add_probe

    handles = [linear.register_forward_pre_hook(hook(name)) for name, linear in linears.items()]
    try:
        loss = loss_fn(model)
        grads = torch.autograd.grad(loss, [probes[name][1] for name in linears], allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    generator = torch.Generator().manual_seed(seed)
    scores = {}
    for name, grad in zip(linears, grads):
        x = probes[name][0]
        grad = torch.zeros_like(x) if grad is None else grad
        std = x.reshape(-1, x.shape[-1]).std(dim=0, unbiased=False)  # (D,)
        terms = [(grad * torch.randn(x.shape, generator=generator) * sigma * std).sum().abs() for _ in range(n_probes)]
        scores[name] = float(torch.stack(terms).mean())
    return scores
