"""Curvature of a loss: Hessian-vector products, top eigenvalue, Hutchinson trace, and a sharpness report.

Shared by the flatness measure of *Same Pre-training Loss, Better Downstream: Implicit Bias Matters for Language
Models* (Liu, Xie, Li, Ma, ICML 2023; flatness = Tr(H)), the per-layer sensitivity of *Q-BERT: Hessian Based
Ultra Low Precision Quantization of BERT* (Shen et al., AAAI 2020; lambda_max by power iteration) and the other
second-order probes of the toolkit.

Every function takes a scalar ``loss`` that still has its autograd graph and the ``params`` to differentiate
(a list of tensors or an ``nn.Module``, whose parameters with ``requires_grad`` are used). Hessian-vector products
use Pearlmutter's double back-propagation, ``Hv = d/dtheta (g . v)`` with ``g = dL/dtheta`` built with
``create_graph=True`` (torch provides the autograd; the loops around it are written here because torch has no
power iteration or trace estimator over parameter lists).

The command ``speechkit sharpness`` (:mod:`speechkit.drivers.sharpness`) prints lambda_max and Tr(H) for a trained
checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from speechkit.errors import SpeechkitError

Params = nn.Module | Iterable[Tensor]


def _param_list(params: Params) -> list[Tensor]:
    """The tensors to differentiate: a module's trainable parameters, or the given tensors."""
    if isinstance(params, nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    params = list(params)
    if not params:
        raise SpeechkitError("params: expected at least one tensor with requires_grad=True, got none")
    for i, p in enumerate(params):
        if not p.requires_grad:
            raise SpeechkitError(f"params[{i}]: expected requires_grad=True (shape {tuple(p.shape)})")
    return params


def _check_loss(loss: Tensor) -> None:
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise SpeechkitError(f"loss: expected a scalar tensor, got {type(loss).__name__} "
                             f"{tuple(loss.shape) if isinstance(loss, Tensor) else ''}")
    if not loss.requires_grad:
        raise SpeechkitError("loss: expected a tensor with an autograd graph (requires_grad=True)")


def _gradients(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    """dL/dtheta with a graph, so that it can be differentiated again (parameters the loss does not use get 0)."""
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _hvp_from_grads(grads: list[Tensor], params: list[Tensor], vector: list[Tensor]) -> list[Tensor]:
    """H v = d/dtheta (g . v); keeps the graph so that the same gradients serve many products."""
    dot = sum((g * v).sum() for g, v in zip(grads, vector))
    if not dot.requires_grad:  # the loss is linear in params: H = 0
        return [torch.zeros_like(p) for p in params]
    hv = torch.autograd.grad(dot, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h.detach() for h, p in zip(hv, params)]


def _dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _check_vector(vector: Sequence[Tensor], params: list[Tensor]) -> list[Tensor]:
    vector = list(vector)
    if len(vector) != len(params):
        raise SpeechkitError(f"vector: expected {len(params)} tensors (one per parameter), got {len(vector)}")
    for i, (v, p) in enumerate(zip(vector, params)):
        if v.shape != p.shape:
            raise SpeechkitError(f"vector[{i}]: expected shape {tuple(p.shape)}, got {tuple(v.shape)}")
    return vector


def hvp(loss: Tensor, params: Params, vector: Sequence[Tensor]) -> list[Tensor]:
    """Hessian-vector product ``H v`` of ``loss`` with respect to ``params`` (Pearlmutter double backprop).

    Args:
        loss: scalar tensor with its autograd graph.
        params: the tensors (or a module's trainable parameters) defining H.
        vector: one tensor per parameter, same shapes.

    Returns:
        ``H v`` as one detached tensor per parameter.
    """
    _check_loss(loss)
    params = _param_list(params)
    vector = _check_vector(vector, params)
    return _hvp_from_grads(_gradients(loss, params), params, vector)


def _random_like(params: list[Tensor], kind: str, generator: torch.Generator | None) -> list[Tensor]:
    out = []
    for p in params:
        r = torch.randn(p.shape, generator=generator, dtype=p.dtype, device="cpu")
        out.append((torch.sign(r) if kind == "rademacher" else r).to(p.device))
    return out


def power_iteration(loss: Tensor, params: Params, iters: int = 20, tol: float = 1e-3,
                    generator: torch.Generator | None = None) -> tuple[float, list[Tensor]]:
    """Dominant Hessian eigenpair by power iteration, as in Q-BERT (Shen et al. 2020, Alg. 1).

    ``v <- Hv / ||Hv||``; the eigenvalue estimate is the Rayleigh quotient ``v^T H v``. Stops after ``iters``
    products or when the estimate changes by less than ``tol`` relative to itself. Power iteration converges to the
    eigenvalue of largest magnitude, which is lambda_max whenever H is positive semi-definite (near a minimum); on a
    Hessian with a larger negative eigenvalue it returns that (negative) value.

    Args:
        loss: scalar tensor with its autograd graph.
        params: the tensors (or a module's trainable parameters) defining H.
        iters: maximum number of Hessian-vector products (>= 1).
        tol: relative tolerance on the eigenvalue between iterations (>= 0).
        generator: random generator for the start vector.

    Returns:
        (eigenvalue, unit eigenvector as one tensor per parameter).
    """
    if iters < 1:
        raise SpeechkitError(f"iters: expected >= 1, got {iters}")
    if tol < 0:
        raise SpeechkitError(f"tol: expected >= 0, got {tol}")
    _check_loss(loss)
    params = _param_list(params)
    grads = _gradients(loss, params)
    v = _random_like(params, "gaussian", generator)
    norm = torch.sqrt(_dot(v, v))
    v = [x / norm for x in v]
    eigenvalue = None
    for _ in range(iters):
        hv = _hvp_from_grads(grads, params, v)
        estimate = float(_dot(v, hv))
        norm = torch.sqrt(_dot(hv, hv))
        if norm == 0:  # H v = 0: v lies in the null space; the dominant eigenvalue is 0 only if H = 0
            return 0.0, v
        v = [x / norm for x in hv]
        converged = eigenvalue is not None and abs(estimate - eigenvalue) <= tol * (abs(eigenvalue) + 1e-12)
        eigenvalue = estimate
        if converged:
            break
    return float(eigenvalue), v


def top_eigenvalue(loss: Tensor, params: Params, iters: int = 20, tol: float = 1e-3,
                   generator: torch.Generator | None = None) -> float:
    """Dominant Hessian eigenvalue lambda_max by power iteration (Q-BERT); see :func:`power_iteration`."""
    return power_iteration(loss, params, iters=iters, tol=tol, generator=generator)[0]


def hutchinson_samples(loss: Tensor, params: Params, n_samples: int = 64,
                       generator: torch.Generator | None = None) -> Tensor:
    """The ``n_samples`` values ``v_i^T H v_i`` for Rademacher probes ``v_i`` (their mean estimates Tr(H))."""
    if n_samples < 1:
        raise SpeechkitError(f"n_samples: expected >= 1, got {n_samples}")
    _check_loss(loss)
    params = _param_list(params)
    grads = _gradients(loss, params)
    values = []
    for _ in range(n_samples):
        v = _random_like(params, "rademacher", generator)
        values.append(_dot(v, _hvp_from_grads(grads, params, v)).detach())
    return torch.stack(values).double().cpu()


def hutchinson_trace(loss: Tensor, params: Params, n_samples: int = 64,
                     generator: torch.Generator | None = None) -> float:
    """Hutchinson estimate of the Hessian trace, the flatness of Liu et al. (ICML 2023).

    ``Tr(H) ~= (1/m) sum_i v_i^T H v_i`` with Rademacher ``v_i`` (entries +-1); unbiased, and exact for a single
    probe when H is diagonal.

    Args:
        loss: scalar tensor with its autograd graph.
        params: the tensors (or a module's trainable parameters) defining H.
        n_samples: number of probes m (>= 1).
        generator: random generator for the probes.
    """
    return float(hutchinson_samples(loss, params, n_samples, generator).mean())


def fisher_trace(log_probs: Tensor, params: Params, n_samples: int = 1,
                 generator: torch.Generator | None = None) -> float:
    """Monte-Carlo trace of the Fisher information, the cheaper flatness estimate of Liu et al. (ICML 2023).

    ``Tr(F) = E_x E_{y ~ p(.|x)} ||grad_theta log p(y|x)||^2`` with labels sampled from the model; equals Tr(H) of
    the mean negative log-likelihood at a global minimum of a well-specified model (and for any parameters of a
    softmax regression). One backward per (example, sample): meant for small evaluation batches.

    Args:
        log_probs: (B, V) log-probabilities with their graph.
        params: the tensors (or a module's trainable parameters).
        n_samples: labels drawn per example.
        generator: random generator for the labels.
    """
    if log_probs.dim() != 2:
        raise SpeechkitError(f"log_probs: expected (B, V) log-probabilities, got shape {tuple(log_probs.shape)}")
    if n_samples < 1:
        raise SpeechkitError(f"n_samples: expected >= 1, got {n_samples}")
    params = _param_list(params)
    labels = torch.multinomial(log_probs.detach().exp().cpu(), n_samples, replacement=True, generator=generator)
    total = 0.0
    for i in range(log_probs.shape[0]):
        for y in labels[i].tolist():
            grads = torch.autograd.grad(log_probs[i, y], params, retain_graph=True, allow_unused=True)
            total += sum(float((g * g).sum()) for g in grads if g is not None)
    return total / (log_probs.shape[0] * n_samples)


# ------------------------------------------------------------------------------------------------------------------
# Sharpness of a trained model


@dataclass
class SharpnessReport:
    """Curvature of the loss averaged over batches (``*_std`` = standard deviation across batches)."""

    n_batches: int
    n_params: int
    loss: float
    top_eigenvalue: float
    top_eigenvalue_std: float
    hessian_trace: float
    hessian_trace_std: float

    def lines(self) -> list[str]:
        return [f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}"
                for key, value in asdict(self).items()]


def sharpness_report(params: Params, loss_fn: Callable[[Any], Tensor], batches: Iterable[Any],
                     iters: int = 20, tol: float = 1e-3, n_samples: int = 32, seed: int = 0) -> SharpnessReport:
    """lambda_max (power iteration) and Tr(H) (Hutchinson) of ``loss_fn(batch)``, per batch, then averaged.

    Each batch gives its own Hessian; the report holds their mean and standard deviation across batches (Q-BERT's
    sensitivity ``|mean| + std`` can be read off directly).

    Args:
        params: the tensors (or a module's trainable parameters) defining H.
        loss_fn: maps one batch to a scalar loss with its graph.
        batches: the batches to evaluate (at least one).
        iters: power-iteration steps per batch.
        tol: power-iteration relative tolerance.
        n_samples: Hutchinson probes per batch.
        seed: seed of the random start vectors and probes.
    """
    params = _param_list(params)
    generator = torch.Generator().manual_seed(seed)
    losses, eigenvalues, traces = [], [], []
    for batch in batches:
        loss = loss_fn(batch)
        losses.append(float(loss.detach()))
        eigenvalues.append(top_eigenvalue(loss, params, iters=iters, tol=tol, generator=generator))
        traces.append(hutchinson_trace(loss, params, n_samples=n_samples, generator=generator))
    if not losses:
        raise SpeechkitError("batches: expected at least one batch, got none")
    eig, tr = torch.tensor(eigenvalues, dtype=torch.float64), torch.tensor(traces, dtype=torch.float64)
    return SharpnessReport(
        n_batches=len(losses), n_params=sum(p.numel() for p in params), loss=sum(losses) / len(losses),
        top_eigenvalue=float(eig.mean()), top_eigenvalue_std=float(eig.std()) if len(eig) > 1 else 0.0,
        hessian_trace=float(tr.mean()), hessian_trace_std=float(tr.std()) if len(tr) > 1 else 0.0)
